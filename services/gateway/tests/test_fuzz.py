"""Fuzzing the gateway over HTTP from its own OpenAPI document (schemathesis), with API keys on
and a real inference replica behind it: no server error, every answer documented, and no
path but the open ones answers without a key (schemathesis' ignored_auth check)."""

from __future__ import annotations

import pytest
import requests

from services.gateway.tests.conftest import write_routes
from tests.support import fuzz, reporting
from tests.support.servers import start_gateway, start_inference

pytestmark = pytest.mark.slow

EXAMPLES = 25
KEY = "fuzz-key-0123456789"


@pytest.fixture(scope="module")
def gateway(gateway_model_root, tmp_path_factory):
    logs = tmp_path_factory.mktemp("gateway-fuzz")
    replica, replica_url = start_inference(gateway_model_root, logs / "inference.log")
    routes = write_routes(logs / "routes.yaml", {"digits": {"backends": [replica_url.removeprefix("http://")]}})
    process, url = start_gateway(routes, logs / "gateway.log", env={"GATEWAY_API_KEYS": KEY})
    yield url
    process.stop()
    replica.stop()


def test_schemathesis_finds_no_server_error_and_no_way_in_without_a_key(gateway, tmp_path, request):
    config = fuzz.config(tmp_path / "schemathesis.toml", ["digits"], ["1", "2", "01", "²", "9" * 30],
                         api_key=KEY)
    result = fuzz.run(gateway, tmp_path, config_file=config, max_examples=EXAMPLES, seed=9,
                      checks=(*fuzz.CHECKS, "ignored_auth"))
    reporting.figure(request, f"schemathesis, gateway: {result.generated} cases, "
                     f"{len(result.failures)} failures, {len(result.errors)} errors")
    assert result.generated >= 1000, result.summary()
    assert not result.failures and not result.errors, result.summary()


@pytest.mark.parametrize("version", ["²", "١", "9" * 40])
def test_a_version_of_unicode_digits_is_404_at_the_gateway(gateway, version):
    response = requests.post(f"{gateway}/v1/models/digits/versions/{version}:predict", json={},
                             headers={"X-API-Key": KEY}, timeout=10)
    assert response.status_code == 404 and set(response.json()) == {"error"}, response.text
