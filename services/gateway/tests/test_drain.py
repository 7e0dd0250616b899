"""A pod about to stop announces its drain (the chart's preStop hook creates the drain file):
it keeps serving, says "not ready" and `Connection: close`, and so leaves the gateway's rotation
(an inference replica) or nginx's connections (a gateway) within about a second, whatever DNS
still says about it."""

from __future__ import annotations

import time

import pytest
import requests

from services.gateway.tests.conftest import address, stop_cleanly, write_routes
from services.gateway.tests.test_resilience import gateway_metric, infer, wait_for
from stack.load import Load
from tests.support.servers import start_gateway, start_inference
from tests.support.upstreams import Upstream

pytestmark = pytest.mark.slow


def test_a_replica_that_announces_its_drain_leaves_rotation_while_it_still_serves(
        gateway_model_root, replicas, tmp_path):
    (_, other), _, _ = replicas
    drain_file = tmp_path / "draining"
    drain_file.write_text("")  # left by a predecessor container in the same pod: removed at start
    draining, draining_url = start_inference(gateway_model_root, tmp_path / "inference.log",
                                             env={"INFERENCE_DRAIN_FILE": str(drain_file)})
    try:
        assert not drain_file.exists()
        routes = write_routes(tmp_path / "routes.yaml", {
            "digits": {"backends": [address(other), address(draining_url)]}})
        # the default probe interval, as in the chart (the test helper's is 0.2 s)
        gateway, url = start_gateway(routes, tmp_path / "gateway.log", env={"GATEWAY_HEALTH_INTERVAL": "1"})
        label = f'modelserver_gateway_requests_total{{backend="{address(draining_url)}"'
        try:
            with Load(lambda s: infer(url, s), concurrency=4, max_requests=5000, max_seconds=60) as load:
                load.wait_for(100)
                assert gateway_metric(url, label) > 0, "the replica was never used"
                drain_file.touch()
                announced = time.monotonic()
                wait_for(lambda: requests.get(f"{draining_url}/readyz", timeout=5).status_code == 503, 3)
                assert time.monotonic() - announced < 1.5
                time.sleep(1.5)  # the gateway's next probe
                before = gateway_metric(url, label)
                load.wait_for(load.result.total + 300)
                after = gateway_metric(url, label)
            result = load.result
            assert result.failures == 0, (result.statuses, result.errors)
            assert after == before, "the gateway kept sending requests to a replica that announced its drain"
            direct = requests.post(f"{draining_url}/v2/models/digits/infer",
                                   json={"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                                     "data": [0.5] * 64}]}, timeout=30)
            assert direct.status_code == 200 and direct.headers["Connection"] == "close"
        finally:
            stop_cleanly(gateway)
    finally:
        draining.stop()


def test_a_gateway_that_announces_its_drain_tells_every_client_to_reconnect(tmp_path):
    upstream = Upstream()
    drain_file = tmp_path / "draining"
    routes = write_routes(tmp_path / "routes.yaml", {"digits": {"backends": [upstream.address]}})
    gateway, url = start_gateway(routes, tmp_path / "gateway.log", env={
        "GATEWAY_DRAIN_FILE": str(drain_file), "GATEWAY_ACCESS_LOG": "0"})
    try:
        first = infer(url, requests.Session())
        assert first.status_code == 200 and first.headers.get("Connection") != "close"
        drain_file.touch()
        # each of the two workers looks at the file for itself (at most every 0.1 s)
        wait_for(lambda: all(requests.get(f"{url}/readyz", timeout=5).status_code == 503 for _ in range(6)), 3)
        assert requests.get(f"{url}/readyz", timeout=5).json()["status"] == "draining"
        # every worker sees the file within a turn of its loop (at most a second)
        wait_for(lambda: all(infer(url, requests.Session()).headers.get("Connection") == "close"
                             for _ in range(6)), 4)
        answers = [infer(url, requests.Session()) for _ in range(10)]
        assert all(a.status_code == 200 and a.headers.get("Connection") == "close" for a in answers)
    finally:
        stop_cleanly(gateway)
        upstream.close()
    # GATEWAY_ACCESS_LOG=0 (the chart's default behind nginx): no line per request
    assert "modelserver.gateway.access" not in gateway.log_path.read_text()
