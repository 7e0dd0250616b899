"""Twice the stack's measured capacity for a minute, through nginx: every request is answered
correctly or refused fast with 503/429 and Retry-After; no 5xx otherwise, no worker timeout
or restart, memory bounded, and normal service right after.

Capacity is measured by the test itself (a closed loop at saturation), not written down: the
machine's 2 cores are shared, so any fixed number would be wrong somewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from soak import procs
from soak.sampler import stack_processes
from tests.support import reporting
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("OVERLOAD_SECONDS", 60))
EXAMPLE = REPO / "examples/digit-0.json"
RSS_GROWTH_LIMIT = 256 * 1024 * 1024  # per process, over the whole run


def generate(url: str, *args: str) -> dict:
    """Run the load generator in its own process; its summary (JSON)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.openloop", "--url", url, "--body", str(EXAMPLE),
         "--expect", '"predictions"', "--max-connections", "2048", *args],
        cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 120, check=True,
    )
    return json.loads(done.stdout)


def log_lines(local, needle: str) -> int:
    logs = local.run_dir / "logs"
    return sum(path.read_text(errors="replace").count(needle) for path in logs.glob("*.log"))


def test_twice_the_capacity_is_served_or_shed_fast(local_stack, request):
    url, local = local_stack
    calibration = generate(url, "--seconds", "8", "--concurrency", "96")
    capacity = calibration["served_rate"]
    assert capacity > 20 and not calibration["errors"], calibration
    before = stack_processes(local.state)
    rss_before = {pid: procs.rss_bytes(pid) for pid in before}
    timeouts_before = log_lines(local, "WORKER TIMEOUT")

    result = generate(url, "--seconds", str(SECONDS), "--rate", str(round(2 * capacity, 1)))
    summary = {"capacity": capacity, **{k: v for k, v in result.items() if k != "served_per_second"}}
    reporting.figure(request, f"overload: {json.dumps(summary)}")

    assert not result["errors"], result["errors"]
    assert set(result["statuses"]) <= {"200", "429", "503"}, result["statuses"]
    assert result["wrong_answers"] == 0 and result["shed_without_retry_after"] == 0
    assert sum(result["statuses"].values()) == result["offered"] - result["unsent"], "some requests got no answer"
    # Still far over capacity: the generator's own pool may run dry for a sliver of the run
    # (CI, quiet machine: 4 % unsent, 1.92x sent), never for most of it.
    assert result["sent_rate"] >= 1.6 * capacity, summary
    assert result["served_rate"] >= 0.5 * capacity, summary  # overload must not collapse serving
    # Latency as the stack gave it (from the send): on a machine this busy the generator itself
    # can fall seconds behind its schedule, and that lag is reported but is not the stack's.
    assert result["shed_service_p99"] is None or result["shed_service_p99"] < 3.0, summary
    assert result["served_service_p99"] < 5.0, summary

    after = stack_processes(local.state)
    assert set(after) == set(before), "a worker was restarted"
    assert log_lines(local, "WORKER TIMEOUT") == timeouts_before
    grown = {f"{before[p]}:{p}": procs.rss_bytes(p) - rss_before[p] for p in before}
    assert max(grown.values()) < RSS_GROWTH_LIMIT, grown

    time.sleep(2)  # queues drain; then service is normal at once
    latencies = []
    with requests.Session() as session:
        for _ in range(100):
            started = time.monotonic()
            response = session.post(f"{url}/v1/models/digits:predict", data=EXAMPLE.read_bytes(), timeout=10)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text[:200]
    assert sorted(latencies)[98] < 0.5, sorted(latencies)[-5:]
