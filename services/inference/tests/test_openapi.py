"""The inference service's OpenAPI document is true to its routes, and valid OpenAPI 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.inference import openapi
from services.protocol import openapi as oa
from tests.support import openapi_routes


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    from services.inference.app import create_app
    from services.inference.config import load_settings

    empty = tmp_path_factory.mktemp("no-models")
    return create_app(load_settings(model_root=Path(empty), poll_seconds=0.0))


def test_every_route_is_documented_and_every_documented_path_is_served(app):
    served = {(t, m) for t, m in openapi_routes.flask_routes(app) if t not in openapi.UNDOCUMENTED}
    documented = openapi_routes.documented(openapi.build_document())
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented paths the service does not serve"


def test_the_document_is_valid_openapi_3():
    from openapi_spec_validator import validate

    validate(openapi.build_document())


def test_the_document_and_the_docs_page_are_served(app):
    client = app.test_client()
    assert client.get("/openapi.json").get_json() == openapi.build_document()
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui-bundle.js" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "docs-init.js"):
        assert client.get(f"{oa.ASSETS_PREFIX}/{asset}").status_code == 200, asset
    missing = client.get(f"{oa.ASSETS_PREFIX}/..%2F..%2Fconfig.py")
    assert missing.status_code == 404 and set(missing.get_json()) == {"error"}


def test_documented_datatypes_are_the_ones_the_codec_takes():
    from services.inference.tensors import DATATYPES

    assert oa.DATATYPES == list(DATATYPES)
