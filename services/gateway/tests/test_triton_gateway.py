"""Triton's extensions through the real gateway: configuration from a replica, statistics summed
over the replicas, repository load/unload on every replica behind an admin key."""

from __future__ import annotations

import pytest
import requests

from services.gateway.tests.conftest import address, stop_cleanly, write_routes
from tests.support.servers import start_gateway

pytestmark = pytest.mark.slow

CLIENT_KEY = "client-key-71c2e0"
ADMIN_KEY = "admin-key-94ab13"
CLIENT = {"X-API-Key": CLIENT_KEY}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
V2_BODY = {"inputs": [{"name": "pixels", "shape": [2, 8, 8, 1], "datatype": "FP32", "data": [0.25] * 128}]}


@pytest.fixture(scope="module")
def two_replicas(replicas):
    return [url for _, url in replicas[:2]]


@pytest.fixture(scope="module")
def gateway(two_replicas, tmp_path_factory):
    here = tmp_path_factory.mktemp("triton-gateway")
    routes = write_routes(here / "routes.yaml", {"digits": {"backends": [address(u) for u in two_replicas]}})
    process, url = start_gateway(routes, here / "gateway.log", env={
        "GATEWAY_API_KEYS": CLIENT_KEY, "GATEWAY_ADMIN_KEYS": ADMIN_KEY,
    })
    yield url
    stop_cleanly(process)


def success_count(url: str, headers: dict[str, str] | None = None, version: str = "1") -> int:
    response = requests.get(f"{url}/v2/models/digits/versions/{version}/stats", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    (stats,) = response.json()["model_stats"]
    return stats["inference_stats"]["success"]["count"]


def test_config_and_statistics_with_tritonclient_through_the_gateway(gateway, two_replicas):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=address(gateway))
    try:
        config = client.get_model_config("digits", headers=CLIENT)
        assert config == requests.get(f"{two_replicas[0]}/v2/models/digits/config", timeout=10).json()
        before_each = [success_count(u) for u in two_replicas]
        before = success_count(gateway, CLIENT)
        assert before == sum(before_each)
        sent = 12
        for _ in range(sent):
            response = requests.post(f"{gateway}/v2/models/digits/versions/1/infer", json=V2_BODY, headers=CLIENT)
            assert response.status_code == 200, response.text
        grew = [success_count(u) - b for u, b in zip(two_replicas, before_each, strict=True)]
        assert sum(grew) == sent and min(grew) > 0, grew  # round-robin: both replicas served
        stats = client.get_inference_statistics("digits", "1", headers=CLIENT)["model_stats"]
        assert stats[0]["inference_stats"]["success"]["count"] == before + sent  # the model's, not a replica's
        reply = requests.get(f"{gateway}/v2/models/digits/stats", headers=CLIENT, timeout=10)
        assert reply.headers["X-Replicas"] == "2/2"
        everything = client.get_inference_statistics(headers=CLIENT)["model_stats"]
        assert {(s["name"], s["version"]) for s in everything} >= {("digits", "1")}
    finally:
        client.close()
    assert requests.get(f"{gateway}/v2/models/digits/config", timeout=10).status_code == 401
    assert requests.get(f"{gateway}/v2/models/nope/stats", headers=CLIENT, timeout=10).status_code == 404


def test_repository_control_needs_the_admin_key_and_acts_on_every_replica(gateway, two_replicas):
    import tritonclient.http as triton

    unload = f"{gateway}/v2/repository/models/digits/unload"
    assert requests.post(unload, timeout=10).status_code == 401
    assert requests.post(unload, headers=CLIENT, timeout=10).status_code == 401  # a client key is no admin key
    # ... and the admin key is no client key.
    assert requests.get(f"{gateway}/v2/models/digits/ready", headers=ADMIN, timeout=10).status_code == 401
    assert requests.post(f"{gateway}/v2/repository/models/nope/load", headers=ADMIN, timeout=10).status_code == 404
    client = triton.InferenceServerClient(url=address(gateway))
    try:
        client.unload_model("digits", headers=ADMIN)
        for url in two_replicas:  # every replica unloaded it, not the one a balancer picked
            assert requests.get(f"{url}/v2/models/digits/ready", timeout=10).status_code == 503
        client.load_model("digits", headers=ADMIN)
        for url in two_replicas:
            assert requests.get(f"{url}/v2/models/digits/ready", timeout=10).status_code == 200
        assert client.is_model_ready("digits", headers=CLIENT)
    finally:
        client.close()
    bad = requests.post(f"{gateway}/v2/repository/models/digits/load", data=b"{bad", headers=ADMIN, timeout=30)
    assert bad.status_code == 400 and set(bad.json()) == {"error"}


def test_without_admin_keys_repository_control_is_403(two_replicas, tmp_path):
    routes = write_routes(tmp_path / "routes.yaml", {"digits": {"backends": [address(two_replicas[0])]}})
    process, url = start_gateway(routes, tmp_path / "gateway.log")
    try:
        for action in ("load", "unload"):
            response = requests.post(f"{url}/v2/repository/models/digits/{action}", timeout=10)
            assert response.status_code == 403 and "GATEWAY_ADMIN_KEYS" in response.json()["error"]
        assert requests.get(f"{two_replicas[0]}/v2/models/digits/ready", timeout=10).status_code == 200
    finally:
        stop_cleanly(process)
