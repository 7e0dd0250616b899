"""The gateway's OpenAPI document is true to its views and its forwarding table."""

from __future__ import annotations

import pytest

from services.gateway import openapi, paths
from services.gateway.tests.conftest import write_routes
from services.protocol import openapi as oa
from tests.support import openapi_routes
from tests.support.upstreams import Upstream


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    from services.gateway.app import create_app
    from services.gateway.config import load_settings

    upstream = Upstream()
    routes = write_routes(tmp_path_factory.mktemp("routes") / "routes.yaml",
                          {"digits": {"backends": [upstream.address]}})
    yield create_app(load_settings(routes_file=routes, api_keys=("k1",), routes_poll=0.0))
    upstream.close()


def test_every_route_is_documented_and_every_documented_path_is_served(app):
    served = {(t, m) for t, m in openapi_routes.flask_routes(app) if t not in openapi.UNDOCUMENTED}
    served |= {(template, method.lower()) for template, method in paths.templates()}
    for auth in (True, False):
        documented = openapi_routes.documented(openapi.build_document(auth))
        assert served - documented == set(), "routes missing from the document"
        assert documented - served == set(), "documented paths the gateway does not serve"


@pytest.mark.parametrize("auth", [True, False])
def test_the_document_is_valid_openapi_3(auth):
    from openapi_spec_validator import validate

    validate(openapi.build_document(auth))


def test_with_keys_only_the_open_paths_need_none(app):
    client = app.test_client()
    document = client.get("/openapi.json").get_json()
    assert document == openapi.build_document(True)
    for template, methods in document["paths"].items():
        for op in methods.values():
            assert (op.get("security") == []) == (template in openapi.OPEN), template
    assert client.get("/docs").status_code == 200
    assert client.get(f"{oa.ASSETS_PREFIX}/swagger-ui.css").status_code == 200
    refused = client.get("/v1/models")
    assert refused.status_code == 401 and set(refused.get_json()) == {"error"}
    assert client.get("/v1/models", headers={"X-API-Key": "k1"}).status_code == 200
