import pytest
from flask import Flask

from services.common import errors
from services.common.errors import NotFound, TooManyRequests, Unavailable, register_error_handlers


def make_app() -> Flask:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/missing")
    def missing():
        raise NotFound("model 'x' not found")

    @app.get("/busy")
    def busy():
        raise Unavailable("overloaded", retry_after=2.2)

    @app.get("/limited")
    def limited():
        raise TooManyRequests("slow down", retry_after=0.1)

    @app.get("/bug")
    def bug():
        raise RuntimeError("secret internals")

    return app


def test_every_error_is_json_with_the_mapped_status():
    client = make_app().test_client()
    cases = {
        "/missing": (404, "model 'x' not found"),
        "/busy": (503, "overloaded"),
        "/limited": (429, "slow down"),
        "/bug": (500, "internal error"),
        "/nowhere": (404, "no such path"),
    }
    for path, (status, message) in cases.items():
        response = client.get(path)
        assert response.status_code == status
        assert response.get_json() == {"error": message}
    assert client.get("/busy").headers["Retry-After"] == "3"
    assert client.get("/limited").headers["Retry-After"] == "1"
    not_allowed = client.post("/busy")
    assert not_allowed.status_code == 405 and "GET" in not_allowed.headers["Allow"]


def test_internal_details_never_reach_the_client():
    assert b"secret" not in make_app().test_client().get("/bug").data


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_has_a_grpc_code_and_client_mistakes_are_never_internal():
    grpc = pytest.importorskip("grpc")
    for cls in [errors.ServingError, *_subclasses(errors.ServingError)]:
        code = grpc.StatusCode[cls.grpc_code]  # a real code's name
        if issubclass(cls, errors.ClientError):
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), cls
    assert errors.NotFound("x").grpc_code == "NOT_FOUND"
    assert errors.Overloaded("x").grpc_code == "UNAVAILABLE"
    assert errors.GatewayTimeout("x").grpc_code == "DEADLINE_EXCEEDED"
    assert errors.PayloadTooLarge("x").grpc_code == "RESOURCE_EXHAUSTED"


def test_the_retry_hint_as_grpc_trailing_metadata():
    assert errors.Overloaded("busy", retry_after=2.2).retry_metadata() == (
        ("retry-after", "3"), ("grpc-retry-pushback-ms", "3000"))
    assert errors.Overloaded("busy", retry_after=0.1).retry_metadata()[0] == ("retry-after", "1")
    assert errors.NotFound("gone").retry_metadata() == ()
