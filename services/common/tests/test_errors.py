from flask import Flask

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
