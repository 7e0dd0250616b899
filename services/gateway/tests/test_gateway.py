"""The real gateway (Gunicorn, 2 workers) in front of real inference servers, over real HTTP."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from services.gateway.tests.conftest import address, stop_cleanly, write_routes
from tests.support.servers import start_gateway

pytestmark = pytest.mark.slow

ENV_KEY = "env-key-5f1c9a"
FILE_KEY = "file-key-0b7e44"
WRONG_KEY = "wrong-key-d3a9c2"
AUTH = {"X-API-Key": ENV_KEY}
PIXELS = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8, 1)
V2_BODY = {"id": "r1", "inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                   "data": PIXELS.ravel().tolist()}]}


@pytest.fixture(scope="module")
def gateway(replicas, tmp_path_factory):
    (_, a), (_, b), _ = replicas
    here = tmp_path_factory.mktemp("gateway")
    routes = write_routes(here / "routes.yaml", {
        "digits": {"backends": [address(a), address(b)], "versions": {"1": 90, "2": 10}},
    })
    keys = here / "keys"
    keys.write_text(f"# mounted from a Secret\n{FILE_KEY}\n")
    process, url = start_gateway(routes, here / "gateway.log", env={
        "GATEWAY_API_KEYS": ENV_KEY, "GATEWAY_API_KEYS_FILE": str(keys),
        "GATEWAY_MAX_BODY_BYTES": str(1024 * 1024),
    })
    yield url, process
    stop_cleanly(process)


def assert_json_error(response: requests.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and fragment in body["error"], body


def served_requests(url: str) -> float:
    """Successful inference calls a replica counted itself (its own /metrics)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("modelserver_requests_total{") and 'status="200"' in line)


# -- both protocols, passed through untouched ------------------------------------------------------


def test_answers_are_the_inference_servers_own_bytes(gateway, replicas):
    url, _ = gateway
    direct = replicas[0][1]
    tfs = json.dumps({"instances": PIXELS.tolist()})
    for path, body in [("/v1/models/digits/versions/1:predict", tfs),
                       ("/v2/models/digits/versions/2/infer", json.dumps(V2_BODY))]:
        through = requests.post(f"{url}{path}", data=body, headers={**AUTH, "Content-Type": "application/json"})
        straight = requests.post(f"{direct}{path}", data=body, headers={"Content-Type": "application/json"})
        assert through.status_code == 200, through.text
        assert through.content == straight.content
        assert through.headers["Content-Type"] == straight.headers["Content-Type"]
    for path in ["/v1/models/digits", "/v1/models/digits/versions/1/metadata", "/v2/models/digits",
                 "/v2/models/digits/versions/1/ready"]:
        through = requests.get(f"{url}{path}", headers=AUTH)
        assert (through.status_code, through.content) == (200, requests.get(f"{direct}{path}").content)
    # an error from the replica is passed through as it is
    bad = requests.post(f"{url}/v1/models/digits:predict", json={"instances": [[1, 2]]}, headers=AUTH)
    assert_json_error(bad, 400, "expects shape")


def test_tritonclient_with_binary_tensors_through_the_gateway(gateway):
    import tritonclient.http as triton

    url, _ = gateway
    client = triton.InferenceServerClient(url=address(url))
    headers = {"Authorization": f"Bearer {FILE_KEY}"}
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits", headers=headers)
    assert client.get_server_metadata(headers=headers)["extensions"][0] == "binary_tensor_data"
    tensor = triton.InferInput("pixels", [1, 8, 8, 1], "FP32")
    tensor.set_data_from_numpy(PIXELS, binary_data=True)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=True)
    result = client.infer("digits", [tensor], outputs=[wanted], model_version="1", headers=headers)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (1, 10) and abs(probabilities.sum() - 1) < 1e-4
    client.close()


# -- balancing and the canary -------------------------------------------------------------------


def test_both_replicas_serve_and_the_canary_splits_by_weight(gateway, replicas):
    url, _ = gateway
    before = [served_requests(u) for _, u in replicas[:2]]

    def infer(_: int) -> str:
        response = requests.post(f"{url}/v2/models/digits/infer", json=V2_BODY, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["model_version"]

    with ThreadPoolExecutor(16) as pool:
        versions = list(pool.map(infer, range(1000)))
    share = versions.count("2") / len(versions)
    assert set(versions) == {"1", "2"}
    assert abs(share - 0.10) <= 0.05, f"version 2 got {share:.1%}, weight 10%"
    used = [served_requests(u) - b for (_, u), b in zip(replicas[:2], before, strict=True)]
    assert min(used) >= 300, f"requests per replica: {used}"  # round-robin: about 500 each
    tfs = requests.post(f"{url}/v1/models/digits:predict", json={"instances": PIXELS.tolist()}, headers=AUTH)
    assert tfs.status_code == 200 and len(tfs.json()["predictions"][0]) == 10


def test_model_listings(gateway):
    url, _ = gateway
    listing = requests.get(f"{url}/v1/models", headers=AUTH).json()
    [digits] = listing["models"]
    assert digits["name"] == "digits" and digits["canary"] == {"1": 90, "2": 10}
    assert {s["version"] for s in digits["model_version_status"]} == {"1", "2"}
    index = requests.post(f"{url}/v2/repository/index", headers=AUTH).json()
    assert sorted((i["name"], i["version"], i["state"]) for i in index) == [
        ("digits", "1", "READY"), ("digits", "2", "READY")]


# -- auth, errors, ids, health, metrics ----------------------------------------------------------


def test_api_keys_and_that_they_never_reach_the_logs(gateway):
    url, process = gateway
    path = f"{url}/v1/models/digits"
    missing = requests.get(path)
    assert_json_error(missing, 401, "API key is required")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert_json_error(requests.get(path, headers={"X-API-Key": WRONG_KEY}), 401, "invalid API key")
    assert_json_error(requests.get(path, headers={"Authorization": f"Basic {ENV_KEY}"}), 401)
    assert_json_error(requests.get(f"{url}/no/such/path"), 401)  # paths are not revealed either
    assert requests.get(path, headers={"Authorization": f"Bearer {ENV_KEY}"}).status_code == 200
    assert requests.get(path, headers={"X-API-Key": FILE_KEY}).status_code == 200
    for open_path in ["/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"]:
        assert requests.get(f"{url}{open_path}").status_code == 200, open_path
    log = process.log_path.read_text()
    assert '"status":401' in log and '"caller":"key-' in log
    for key in (ENV_KEY, FILE_KEY, WRONG_KEY):
        assert key not in log


@pytest.mark.parametrize(
    "method, path, kwargs, status, fragment",
    [
        ("post", "/v1/models/nope:predict", {"json": {"instances": []}}, 404, "model 'nope' not found"),
        ("post", "/v2/models/nope/infer", {"json": V2_BODY}, 404, "model 'nope' not found"),
        ("get", "/v1/models/nope", {}, 404, "model 'nope' not found"),
        ("post", "/v1/models/digits/versions/x:predict", {"json": {}}, 404, "versions are integers"),
        ("get", "/v1/models/digits:predict", {}, 405, "method not allowed"),
        ("post", "/v1/models/digits", {}, 405, "method not allowed"),
        ("get", "/nothing/here", {}, 404, "no such path"),
        ("post", "/v1/models/digits:predict", {"data": b" " * (2 * 1024 * 1024)}, 413, "too large"),
        ("post", "/v1/models/digits:predict", {"data": b"{", "headers": {"Content-Type": "text/plain"}},
         415, "expected Content-Type"),
        ("post", "/v1/models/digits/versions/7:predict", {"json": {"instances": []}}, 404, "version 7"),
    ],
)
def test_bad_requests_get_json_errors(gateway, method, path, kwargs, status, fragment):
    url, _ = gateway
    headers = {**AUTH, **kwargs.pop("headers", {})}
    response = getattr(requests, method)(f"{url}{path}", headers=headers, **kwargs)
    assert_json_error(response, status, fragment)
    if status == 405:
        assert response.headers["Allow"] in ("GET", "POST")


def test_request_ids_are_echoed_generated_and_logged(gateway):
    url, process = gateway
    given = requests.get(f"{url}/v1/models/digits", headers={**AUTH, "X-Request-ID": "trace-abc.123"})
    assert given.headers["X-Request-ID"] == "trace-abc.123"
    made = requests.get(f"{url}/v1/models/digits", headers={**AUTH, "X-Request-ID": "bad id\twith tab"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if "trace-abc.123" in line]
    [entry] = [e for e in lines if e.get("logger") == "modelserver.gateway.access"]
    assert entry["method"] == "GET" and entry["path"] == "/v1/models/digits"
    assert entry["model"] == "digits" and entry["status"] == 200
    assert entry["backend"].startswith("127.0.0.1:") and entry["duration_ms"] > 0


def test_readiness_and_metrics(gateway):
    url, _ = gateway
    ready = requests.get(f"{url}/readyz")
    assert ready.json() == {"status": "ready", "models": {"digits": {"backends": 2, "ready": 2}}}
    requests.get(f"{url}/v1/models/digits")  # a rejection to count
    scraped = requests.get(f"{url}/metrics")
    assert scraped.headers["Content-Type"].count("charset") == 1, scraped.headers  # not twice
    text = scraped.text
    assert re.search(
        r'modelserver_gateway_requests_total\{backend="127\.0\.0\.1:\d+",model="digits",protocol="http",status="200"\}',
        text,
    )
    assert "modelserver_gateway_upstream_duration_seconds_bucket" in text
    assert 'modelserver_gateway_rejections_total{reason="unauthorized"}' in text
    assert "modelserver_gateway_inflight_requests" in text
    assert 'modelserver_gateway_backends{model="digits"} 2.0' in text
    assert 'modelserver_gateway_backends_ready{model="digits"} 2.0' in text
