"""The gateway when things go wrong: dead replicas, reloads under load, limits and deadlines."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.gateway.tests.conftest import address, stop_cleanly, write_routes
from stack.load import Load
from tests.support.servers import start_gateway
from tests.support.upstreams import Upstream

pytestmark = pytest.mark.slow

V2_BODY = {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0.5] * 64}]}


def infer(url: str, session: requests.Session) -> requests.Response:
    return session.post(f"{url}/v2/models/digits/infer", json=V2_BODY, timeout=30)


def gateway_metric(url: str, prefix: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def wait_for(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


# -- replicas dying and routes changing under load ------------------------------------------------


def test_a_replica_killed_under_load_costs_no_request(replicas, tmp_path):
    (_, survivor), _, (victim, victim_url) = replicas
    routes = write_routes(tmp_path / "routes.yaml", {
        "digits": {"backends": [address(survivor), address(victim_url)]}})
    gateway, url = start_gateway(routes, tmp_path / "gateway.log")
    victim_label = f'modelserver_gateway_requests_total{{backend="{address(victim_url)}"'
    try:
        with Load(lambda s: infer(url, s), concurrency=8, max_requests=3000, max_seconds=60) as load:
            load.wait_for(200)
            assert gateway_metric(url, victim_label) > 0, "the victim was never used"
            os.killpg(victim.pid, signal.SIGKILL)  # master and workers at once, as a node failure
            killed_at = load.result.total
            load.wait_for(killed_at + 400)
        result = load.result
        assert result.failures == 0, (result.statuses, result.errors)
        assert result.total >= killed_at + 400
        assert gateway_metric(url, "modelserver_gateway_retries_total") >= 1
        assert requests.get(f"{url}/readyz").json()["models"]["digits"] == {"backends": 2, "ready": 1}
        ready = 'modelserver_gateway_backends_ready{model="digits"}'
        wait_for(lambda: gateway_metric(url, ready) == 1)  # each worker's next probe
        assert gateway_metric(url, ready) == 1
        assert gateway_metric(url, 'modelserver_gateway_backends{model="digits"}') == 2
    finally:
        stop_cleanly(gateway)


def test_routes_file_changes_under_load_apply_without_errors(replicas, tmp_path):
    (_, a), (_, b), _ = replicas
    routes = write_routes(tmp_path / "routes.yaml", {
        "digits": {"backends": [address(a)], "versions": {"1": 100}}})
    gateway, url = start_gateway(routes, tmp_path / "gateway.log")
    try:
        with Load(lambda s: infer(url, s), concurrency=8, max_requests=5000, max_seconds=60,
                  classify=lambda r: r.json()["model_version"]) as load:
            load.wait_for(200)
            write_routes(routes, {"digits": {"backends": [address(a), address(b)], "versions": {"2": 100}}})
            wait_for(lambda: load.result.seen["2"] >= 100)
            before = load.result.seen["1"]
            time.sleep(1.0)
            assert load.result.seen["1"] == before, "a worker still routes by the old file"
            write_routes(routes, {"digits": {"backends": []}})  # a broken edit changes nothing
            time.sleep(0.6)
        result = load.result
        assert result.failures == 0, (result.statuses, result.errors)
        assert result.seen["1"] >= 100 and result.seen["2"] >= 100
        assert gateway_metric(url, 'modelserver_gateway_reloads_total{file="routes",result="applied"}') == 2
        assert gateway_metric(url, 'modelserver_gateway_reloads_total{file="routes",result="rejected"}') == 2
        assert "routes file rejected" in gateway.log_path.read_text()  # 8 clients log hundreds of lines after it
    finally:
        stop_cleanly(gateway)


def test_sighup_reloads_routes_under_load_without_errors(replicas, tmp_path):
    (_, a), (_, b), _ = replicas
    routes = write_routes(tmp_path / "routes.yaml", {
        "digits": {"backends": [address(a), address(b)], "versions": {"1": 100}}})
    gateway, url = start_gateway(routes, tmp_path / "gateway.log", env={"GATEWAY_ROUTES_POLL": "0"})
    try:
        with Load(lambda s: infer(url, s), concurrency=8, max_requests=5000, max_seconds=60,
                  classify=lambda r: r.json()["model_version"]) as load:
            load.wait_for(200)
            write_routes(routes, {"digits": {"backends": [address(a), address(b)], "versions": {"2": 100}}})
            time.sleep(0.5)
            assert load.result.seen["2"] == 0, "the file was reloaded without SIGHUP"
            os.kill(gateway.pid, signal.SIGHUP)  # Gunicorn replaces its workers gracefully
            wait_for(lambda: load.result.seen["2"] >= 200, timeout=30)
        result = load.result
        assert result.failures == 0, (result.statuses, result.errors)
        assert result.seen["2"] >= 200
    finally:
        stop_cleanly(gateway)


# -- limits ---------------------------------------------------------------------------------------


def test_the_rate_limit_is_per_key_and_shared_by_the_workers(replicas, tmp_path):
    (_, a), _, _ = replicas
    routes = write_routes(tmp_path / "routes.yaml", {"digits": {"backends": [address(a)]}})
    gateway, url = start_gateway(routes, tmp_path / "gateway.log", env={
        "GATEWAY_API_KEYS": "key-one,key-two", "GATEWAY_RATE_LIMIT": "1", "GATEWAY_RATE_BURST": "4"})
    try:
        started = time.monotonic()
        # A new connection per request, so both workers take some: the budget is one for both.
        statuses = [requests.get(f"{url}/v1/models/digits", headers={"X-API-Key": "key-one",
                                                                      "Connection": "close"}).status_code
                    for _ in range(12)]
        elapsed = time.monotonic() - started
        assert 4 <= statuses.count(200) <= 4 + int(elapsed) + 1, statuses
        limited = requests.get(f"{url}/v1/models/digits", headers={"X-API-Key": "key-one"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "rate limit" in limited.json()["error"]
        assert requests.get(f"{url}/v1/models/digits", headers={"X-API-Key": "key-two"}).status_code == 200
        assert requests.get(f"{url}/healthz").status_code == 200
        assert gateway_metric(url, 'modelserver_gateway_rejections_total{reason="rate_limited"}') >= 7
    finally:
        stop_cleanly(gateway)


# -- deadlines, shed load and failing replicas (test doubles of a broken inference) ----------------


@pytest.fixture(scope="module")
def doubles(replicas, tmp_path_factory):
    (_, a), _, _ = replicas
    shedding = Upstream(status=503, body=b'{"error": "queue full"}', headers={"Retry-After": "1"})
    slow = Upstream(models=("slow",), delay=3.0)
    failing = Upstream(models=("flaky",), status=500, body=b'{"error": "replica bug"}')
    healthy = Upstream(models=("flaky",))
    here = tmp_path_factory.mktemp("doubles")
    routes = write_routes(here / "routes.yaml", {
        "digits": {"backends": [shedding.address, address(a)]},
        "slow": {"backends": [slow.address]},
        "flaky": {"backends": [failing.address, healthy.address]},
    })
    gateway, url = start_gateway(routes, here / "gateway.log", env={
        "GATEWAY_REQUEST_TIMEOUT": "1", "GATEWAY_MAX_REQUEST_TIMEOUT": "2"})
    yield url, shedding, slow, failing, healthy
    stop_cleanly(gateway)
    for double in (shedding, slow, failing, healthy):
        double.close()


def test_a_slow_upstream_gets_504_at_the_deadline(doubles):
    url, _, slow, _, _ = doubles
    started = time.monotonic()
    response = requests.post(f"{url}/v2/models/slow/infer", json=V2_BODY,
                             headers={"X-Request-Timeout": "0.3", "X-Request-ID": "slow-1"})
    took = time.monotonic() - started
    assert response.status_code == 504 and "deadline of 0.3 s" in response.json()["error"]
    assert 0.25 <= took < 1.5
    _, _, seen = slow.seen[-1]
    assert 0 < float(seen["X-Request-Timeout"]) <= 0.3  # the remaining budget went on
    assert seen["X-Request-ID"] == "slow-1"
    started = time.monotonic()
    default = requests.post(f"{url}/v2/models/slow/infer", json=V2_BODY)
    assert default.status_code == 504 and 0.9 <= time.monotonic() - started < 2.5  # default: 1 s


def test_shed_load_is_retried_on_another_replica(doubles):
    url, shedding, _, _, _ = doubles
    before = shedding.model_calls()
    statuses = [requests.post(f"{url}/v2/models/digits/infer", json=V2_BODY).status_code for _ in range(20)]
    assert statuses == [200] * 20
    assert shedding.model_calls() - before >= 5  # it was asked, shed, and the other replica answered
    assert gateway_metric(url, 'modelserver_gateway_retries_total{model="digits",reason="503"}') >= 5


def test_other_errors_pass_through_untouched_and_are_not_retried(doubles):
    url, _, _, failing, healthy = doubles
    before = failing.model_calls() + healthy.model_calls()
    responses = [requests.post(f"{url}/v1/models/flaky:predict", json={"instances": []},
                               headers={"X-Request-Timeout": "100", "Authorization": "Bearer x"})
                 for _ in range(20)]
    errors = [r for r in responses if r.status_code == 500]
    assert 5 <= len(errors) <= 15
    assert all(r.content == b'{"error": "replica bug"}' for r in errors)
    assert failing.model_calls() + healthy.model_calls() - before == 20  # one call per request
    _, _, seen = failing.seen[-1]
    assert float(seen["X-Request-Timeout"]) <= 2.0  # the client's 100 s, capped
    assert "Authorization" not in seen and "X-API-Key" not in seen  # credentials stay here


# -- the front door: overload is refused as it arrives ---------------------------------------------


def test_a_full_gateway_refuses_at_once_while_its_threads_are_busy(tmp_path):
    """One thread, held by a slow replica, and three requests queued for it: the worker is at
    its limit (it starts at 4 x its threads), so the next model call gets its 503 from the
    worker's event loop in milliseconds (no thread was free to take it), on a connection that
    stays usable; health is never refused."""
    slow = Upstream(delay=0.4)
    routes = write_routes(tmp_path / "routes.yaml", {"digits": {"backends": [slow.address]}})
    gateway, url = start_gateway(routes, tmp_path / "gateway.log", env={
        "GATEWAY_WORKERS": "1", "GATEWAY_THREADS": "1", "GATEWAY_QUEUE_BUDGET_MS": "5000"})
    try:
        assert infer(url, requests.Session()).status_code == 200
        time.sleep(0.2)  # its thread finishes up after the answer went out; until then it counts
        before = slow.model_calls()
        with ThreadPoolExecutor(4) as pool:
            held = [pool.submit(infer, url, requests.Session()) for _ in range(4)]
            wait_for(lambda: slow.model_calls() == before + 1)
            assert slow.model_calls() == before + 1, "the slow call never reached the replica"
            time.sleep(0.1)  # the other three are read and queued for the thread
            connection = http.client.HTTPConnection(address(url), timeout=10)
            started = time.monotonic()
            connection.request("POST", "/v2/models/digits/infer", body=json.dumps(V2_BODY),
                               headers={"X-Request-ID": "door-1", "Content-Type": "application/json"})
            refused = connection.getresponse()
            took = time.monotonic() - started
            body = json.loads(refused.read())
            assert refused.status == 503 and refused.getheader("Retry-After") == "1", body
            assert refused.getheader("X-Request-ID") == "door-1"
            assert "holds 4 requests, its limit for answers within the 5000 ms budget" in body["error"]
            assert took < 0.1, f"refused after {took * 1000:.0f} ms; the thread was busy for 400"
            connection.request("GET", "/readyz")  # same connection; health waits, never refused
            assert connection.getresponse().status == 200
            assert [f.result().status_code for f in held] == [200] * 4
        assert slow.model_calls() == before + 4  # the refused call never reached the replica
        assert gateway_metric(url, 'modelserver_gateway_rejections_total{reason="overloaded"}') == 1
        assert (
            gateway_metric(
                url, 'modelserver_gateway_requests_total{backend="none",model="digits",protocol="http",status="503"}'
            ) == 1
        )
        assert '"request_id":"door-1"' in gateway.log_tail(200)  # an access line like any other
    finally:
        stop_cleanly(gateway)
        slow.close()
