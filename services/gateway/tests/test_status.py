"""The status page: its snapshot (pure), its access rule, and whole-gateway numbers under Gunicorn.

The page itself, in a real browser against the real stack: tests/e2e/test_status_page.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.gateway import status
from services.gateway.balancer import Balancer
from services.gateway.canary import Canary
from services.gateway.routes_file import Target
from services.gateway.routing import Route
from services.gateway.tests.conftest import stop_cleanly, write_routes
from services.gateway.upstream import Backend
from services.protocol.facts import STATUS_PATHS
from tests.support.servers import start_gateway
from tests.support.upstreams import Upstream

KEY = "status-key-5b1e"


def backend(port: int, *, serving: dict[str, str] | None = None, probed: bool = True) -> Backend:
    b = Backend("127.0.0.1", port, pool_size=1)
    b.serving, b.versions, b.probed = frozenset(serving or {}), dict(serving or {}), probed
    return b


def route(name: str, backends: list[Backend], canary: Canary | None = None) -> Route:
    return Route(name, (Target("127.0.0.1", 1),), Balancer(name, backends), canary)


def families():
    """Samples as two replicas of digits and an unrouted name leave them."""
    registry = CollectorRegistry()
    requests_total = Counter("modelserver_gateway_requests_total", "", ["model", "backend", "status"],
                             registry=registry)
    latency = Histogram("modelserver_gateway_upstream_duration_seconds", "", ["model", "backend"],
                        buckets=(0.01, 0.1, 1.0), registry=registry)
    requests_total.labels("digits", "a:1", "200").inc(3)
    requests_total.labels("digits", "b:2", "200").inc(2)
    requests_total.labels("digits", "b:2", "503").inc(1)
    requests_total.labels("none", "none", "404").inc(7)
    for seconds, replica in ((0.005, "a:1"), (0.05, "a:1"), (0.5, "b:2"), (5.0, "b:2")):
        latency.labels("digits", replica).observe(seconds)
    return registry.collect()


def test_the_snapshot_sums_replicas_and_shows_routes_canary_and_replica_states():
    routes = {
        "digits": route("digits", [backend(1, serving={"digits": "2"}), backend(2), backend(3, probed=False)],
                        Canary([("1", 90), ("2", 10)])),
        "quiet": route("quiet", [backend(4, serving={"quiet": "1"})]),
    }
    snap = status.snapshot(routes, families(), now=1234.5)
    assert snap["time"] == 1234.5
    digits, quiet = snap["models"]
    assert digits["name"] == "digits" and digits["canary"] == {"1": 90, "2": 10}
    assert digits["replicas"] == [
        {"address": "127.0.0.1:1", "state": "ready", "version": "2"},
        {"address": "127.0.0.1:2", "state": "not ready", "version": None},
        {"address": "127.0.0.1:3", "state": "unprobed", "version": None},
    ]
    assert digits["requests"] == {"200": 5, "503": 1}
    assert digits["latency_buckets"] == [["0.01", 1], ["0.1", 2], ["1.0", 3], ["+Inf", 4]]
    # No traffic yet: empty counts, not an absent model; an unrouted label ("none") is no model.
    assert quiet == {"name": "quiet", "canary": None, "replicas": [
        {"address": "127.0.0.1:4", "state": "ready", "version": "1"}], "requests": {}, "latency_buckets": []}


def make_app(tmp_path, *, page: bool):
    from services.gateway.app import create_app
    from services.gateway.config import load_settings

    upstream = Upstream()
    routes = write_routes(tmp_path / "routes.yaml", {"digits": {"backends": [upstream.address]}})
    app = create_app(load_settings(routes_file=routes, api_keys=(KEY,), routes_poll=0.0, status_page=page))
    return app, upstream


def test_off_by_default_every_status_path_is_404_even_with_a_key(tmp_path):
    from services.gateway.config import GatewaySettings

    assert GatewaySettings.status_page is False
    app, upstream = make_app(tmp_path, page=False)
    client = app.test_client()
    for path in STATUS_PATHS:
        for headers in ({}, {"X-API-Key": KEY}):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 404 and "GATEWAY_STATUS_PAGE" in answer.get_json()["error"], path
    upstream.close()


def test_on_it_is_read_only_and_needs_no_key_while_model_calls_still_do(tmp_path):
    app, upstream = make_app(tmp_path, page=True)
    client = app.test_client()
    page = client.get("/status")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert '<script src="/status.js">' in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]  # no CDN could load
    script = client.get("/status.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    snap = client.get("/status.json").get_json()
    assert [m["name"] for m in snap["models"]] == ["digits"]
    assert snap["models"][0]["replicas"] == [{"address": upstream.address, "state": "ready", "version": "1"}]
    assert client.post("/status.json").status_code == 405
    assert client.get("/v1/models").status_code == 401
    upstream.close()


@pytest.mark.slow
def test_the_numbers_are_the_whole_gateways_whichever_worker_answers(tmp_path):
    """Two Gunicorn workers share the traffic; every poll, answered by either, counts all of it."""
    upstream = Upstream()
    routes = write_routes(tmp_path / "routes.yaml", {"digits": {"backends": [upstream.address]}})
    process, url = start_gateway(routes, tmp_path / "gateway.log", env={"GATEWAY_STATUS_PAGE": "1"})
    sent = 200
    try:
        def predict(_: int) -> int:
            # A new connection each time, so both workers take requests.
            return requests.post(f"{url}/v1/models/digits:predict", json={"instances": [[0]]},
                                 headers={"Connection": "close"}, timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(predict, range(sent))) == {200}
        for _ in range(20):
            snap = requests.get(f"{url}/status.json", headers={"Connection": "close"}, timeout=10).json()
            digits = snap["models"][0]
            assert digits["requests"] == {"200": sent}  # the polls themselves are not counted
            assert digits["latency_buckets"][-1] == ["+Inf", sent]
    finally:
        stop_cleanly(process)
        upstream.close()
