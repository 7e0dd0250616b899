"""The gateway's status page in a real headless browser (Debian's chromium) on the local stack:
it shows the digits model and its replicas, and its charts move under traffic sent through
nginx; the screenshot goes to reports/status.png."""

from __future__ import annotations

import json

import pytest
import requests

from services.protocol.facts import STATUS_PATHS
from stack.load import Load
from tests.support import reporting
from tests.support.browser import Browser, find_chromium
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

SCREENSHOT = REPO / "reports" / "status.png"
DIGITS = "[data-model='digits']"


def chart(metric: str) -> str:
    return f"document.querySelector(\"{DIGITS} [data-metric='{metric}']\")"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (`make setup` installs it when run as root)")
    browser = Browser(executable, tmp_path_factory.mktemp("chromium") / "chromium.log")
    yield browser
    browser.close()


def test_nginx_never_serves_the_status_page(stack):
    url, _ = stack
    # nginx matches locations on the decoded, merged path: no spelling of it gets through.
    for path in [*STATUS_PATHS, "/st%61tus", "//status.json", "/status.json?x=1"]:
        answer = requests.get(f"{url}{path}", timeout=10)
        assert answer.status_code == 404 and set(answer.json()) == {"error"}, path


def digits_served(gateway: str) -> float:
    return requests.get(f"{gateway}/status.json", timeout=10).json()["models"][0]["requests"].get("200", 0)


def test_the_page_shows_digits_and_its_replicas_and_its_charts_move_under_traffic(local_stack, browser, request):
    url, local = local_stack
    gateway = local.state["gateway"]
    replicas = sorted(r.removeprefix("http://") for r in local.state["inference"])
    browser.open(f"{gateway}/status")
    ready = f"document.querySelectorAll(\"{DIGITS} tr.replica[data-state='ready']\").length"
    assert browser.wait_for(f"{ready} === {len(replicas)} && {ready}", 30) == len(replicas)
    shown = browser.evaluate(f"[...document.querySelectorAll(\"{DIGITS} tr.replica td:first-child\")]"
                             ".map(td => td.textContent)")
    assert sorted(shown) == replicas
    # The rate chart's line before this test sends anything.
    browser.wait_for(f"Number({chart('rate')}.dataset.points) >= 1", 20)
    idle_line = browser.evaluate(f"{chart('rate')}.querySelector('polyline').getAttribute('points')")

    body = json.loads((REPO / "examples" / "digit-0.json").read_text())
    before = digits_served(gateway)
    polls = browser.evaluate("Number(document.body.dataset.polls)")
    with Load(lambda s: s.post(f"{url}/v1/models/digits:predict", json=body, timeout=10),
              concurrency=4, max_requests=3000, max_seconds=30) as load:
        # Three polls under traffic (the first difference may straddle its start).
        browser.wait_for(f"Number(document.body.dataset.polls) >= {polls + 4}", 30)
        rate = browser.wait_for(f"Number({chart('rate')}.dataset.last)", 10)
        p99_ms = browser.wait_for(f"Number({chart('p99')}.dataset.last)", 10)
    result = load.stop()
    assert result.total and result.failures == 0, result.statuses
    assert rate > 0 and p99_ms > 0
    moved_line = browser.evaluate(f"{chart('rate')}.querySelector('polyline').getAttribute('points')")
    assert moved_line != idle_line
    errors = browser.evaluate(f"Number({chart('errors')}.dataset.last)")
    assert errors == 0, "no 5xx was sent, the page must show none"
    # Every request the load got a 200 for is counted, whichever gateway worker served it.
    assert digits_served(gateway) - before == result.statuses[200]
    browser.screenshot(SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 10_000
    reporting.figure(request, f"status page: {rate:.0f} req/s and p99 {p99_ms:.1f} ms read under "
                     f"{result.total} requests in 4 threads; screenshot {SCREENSHOT.relative_to(REPO)}")
