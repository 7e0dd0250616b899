"""A real Prometheus scrapes the real local stack (the gateway's and each replica's own /metrics
port; nginx does not serve /metrics) while traffic runs through nginx, then every dashboard
panel and every alert expression is evaluated through its HTTP API (tests/support/prometheus.py
says what "backed by the scrape" means). The alerting rules are loaded into it as well."""

from __future__ import annotations

import copy
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.observability import files
from tests.support.prometheus import (
    BINARY,
    KUBERNETES_ONLY,
    MISSING,
    Prometheus,
    dashboard_problems,
    reference_problems,
    rules_problems,
)
from tests.support.promql import references
from tests.support.reporting import figure

pytestmark = [pytest.mark.slow, pytest.mark.skipif(BINARY is None, reason=MISSING)]

# The dashboard's variables as a user picks them (the digits model, the version now serving it:
# earlier tests may have upgraded it); a rate window of a few scrapes.
VARIABLES = {"model": "digits", "namespace": ".*", "__rate_interval": "15s"}
SERVING_VERSION = 'topk(1, sum by (version) (rate(modelserver_requests_total{model="digits", status="200"}[15s])))'
DIGIT = (files.REPO / "examples/digit-0.json").read_bytes()
DIGIT_V2 = (files.REPO / "examples/digit-0-v2.json").read_bytes()


class Traffic(threading.Thread):
    """Requests through nginx, bounded in count and time: mostly predictions, plus the answers
    the error panels and alerts count -- a 400 (bad JSON), a 404 (unknown model) and a 504 (a
    deadline no model call can meet)."""

    def __init__(self, url: str, max_requests: int = 4000, max_seconds: float = 90) -> None:
        super().__init__(daemon=True)
        self.url, self.max_requests, self.max_seconds = url, max_requests, max_seconds
        self.stopping = threading.Event()
        self.statuses: dict[int, int] = {}
        self.started = time.monotonic()

    def call(self, session: requests.Session, i: int) -> int:
        predict = f"{self.url}/v1/models/digits:predict"
        match i % 10:
            case 7:
                return session.post(predict, data=b"{not json", timeout=10).status_code
            case 8:
                return session.post(
                    predict, data=DIGIT, headers={"X-Request-Timeout": "0.00001"}, timeout=10
                ).status_code
            case 9:
                return session.post(f"{self.url}/v1/models/nope:predict", data=DIGIT, timeout=10).status_code
            case 6:
                return session.post(f"{self.url}/v2/models/digits/infer", data=DIGIT_V2,
                                    headers={"Content-Type": "application/json"}, timeout=10).status_code
            case _:
                return session.post(predict, data=DIGIT, timeout=10).status_code

    def run(self) -> None:
        with requests.Session() as session:
            for i in range(self.max_requests):
                if self.stopping.is_set() or time.monotonic() - self.started > self.max_seconds:
                    return
                status = self.call(session, i)
                self.statuses[status] = self.statuses.get(status, 0) + 1


@pytest.fixture(scope="module")
def scraped(stack, tmp_path_factory, request):
    """(Prometheus scraping the stack, the traffic's statuses) once the traffic is in the scrape."""
    url, local = stack
    if local is None:
        pytest.skip("scrapes the local stack's processes directly (a cluster's Prometheus scrapes its pods)")
    state = local.state
    jobs = {"modelserver-gateway": [urlsplit(state["gateway"]).netloc],
            "modelserver-inference": [urlsplit(u).netloc for u in state["inference"]]}
    started = time.monotonic()
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), jobs, [files.ALERTS])
    traffic = Traffic(url)
    traffic.start()
    try:
        # Every target up, and the traffic's 504s already in a rate window of the panels.
        deadline = time.monotonic() + 60
        ready = 'sum(rate(modelserver_gateway_requests_total{status="504"}[15s])) > 0 and on() count(up == 1) == 3'
        while not prometheus.query(ready):
            assert time.monotonic() < deadline, f"the scrape never showed the traffic:\n{prometheus.process.log_tail()}"
            assert traffic.is_alive(), f"the traffic stopped early: {traffic.statuses}"
            time.sleep(0.5)
        yield prometheus, traffic
    finally:
        traffic.stopping.set()
        traffic.join(15)
        assert prometheus.stop() == 0, prometheus.process.log_tail()
    figure(
        request,
        f"observability: real Prometheus + traffic through the stack for "
        f"{time.monotonic() - started:.1f} s ({sum(traffic.statuses.values())} requests: {traffic.statuses})",
    )


def variables(prometheus: Prometheus) -> dict[str, str]:
    (serving,) = prometheus.query(SERVING_VERSION)
    return {**VARIABLES, "version": serving["metric"]["version"]}


def test_the_traffic_has_every_kind_of_answer(scraped):
    _, traffic = scraped
    assert {200, 400, 404, 504} <= set(traffic.statuses), traffic.statuses


def test_every_dashboard_panel_returns_data_from_the_real_scrape(scraped, request):
    prometheus, _ = scraped
    started = time.monotonic()
    board = files.dashboard()
    assert dashboard_problems(prometheus, board, variables(prometheus)) == []
    queries = len(files.panel_targets(board))
    figure(request, f"observability: {queries} dashboard queries checked against a real Prometheus "
                    f"in {time.monotonic() - started:.1f} s")


def test_every_alert_expression_refers_only_to_scraped_series(scraped):
    prometheus, _ = scraped
    assert rules_problems(prometheus, files.alerts()) == []


def test_prometheus_loaded_the_rules_and_evaluates_each_without_error(scraped):
    prometheus, _ = scraped
    deadline = time.monotonic() + 15
    while True:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        if all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown" for r in rules) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in files.alert_rules())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


@pytest.mark.parametrize(("expr", "problem"), [
    ("rate(modelserver_gateway_requestz_total[1m])", "no such series"),
    ('sum by (modle) (rate(modelserver_gateway_requests_total[1m]))', "groups or matches by 'modle'"),
    ('modelserver_requests_total{stauts!~"2.."}', "no label 'stauts'"),
    ('modelserver_requests_total{model="digits", status="599"}', "no such series"),
    ("sum by (pod) (rate(container_cpu_usage_second_total[1m]))", "no such series"),  # cAdvisor typo
    ("sum(rate(modelserver_requests_total[1m])", "unbalanced"),
])
def test_the_check_fails_on_an_unknown_metric_or_label(scraped, expr, problem):
    prometheus, _ = scraped
    problems = reference_problems(prometheus, expr)
    assert problems and problem in " ".join(problems), problems


def test_a_dashboard_or_rule_with_an_unknown_metric_fails_the_check(scraped):
    prometheus, _ = scraped
    board = copy.deepcopy(files.dashboard())
    target = next(t for p in board["panels"] for t in p.get("targets", []))
    target["expr"] = target["expr"].replace("modelserver_gateway_requests_total", "modelserver_gateway_request_total")
    assert any(
        "modelserver_gateway_request_total" in p for p in dashboard_problems(prometheus, board, variables(prometheus))
    )
    rules = files.alerts()
    rules["groups"][0]["rules"][0]["expr"] = "modelserver_gateway_errors_total > 0"
    assert any("modelserver_gateway_errors_total" in p for p in rules_problems(prometheus, rules))


def test_only_the_pod_panels_use_kubernetes_only_metrics_and_each_declared_one_is_used():
    used = set()
    for panel, target in files.panel_targets(files.dashboard()):
        names = references(target["expr"]).metric_names
        if names & KUBERNETES_ONLY:
            assert panel["title"] in {"CPU per pod", "Memory per pod"}, panel["title"]
            assert names <= KUBERNETES_ONLY, names  # a panel mixing both could hide a local typo
        used |= names & KUBERNETES_ONLY
    assert used == KUBERNETES_ONLY
