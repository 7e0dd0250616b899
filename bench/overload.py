"""Twice the stack's measured capacity, open loop: the overload promises, measured one way.

`tests/overload` asserts them and `make bench` reports them, from the same run of the same
generator (`bench/openloop.py`, in a process and scheduling group of its own). Every bound
is a promise of docs/architecture.md ("Admission") or scales with what was measured just
before: capacity with a closed loop at the stack's own concurrency, the model call from the
replicas' histogram. The cores are shared, so a number written down here would be wrong
somewhere.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from services.gateway.config import GatewaySettings

REPO = Path(__file__).resolve().parent.parent
SHED_P99 = 0.1  # a request that will not be served is told so within 100 ms
BUDGET = GatewaySettings.queue_budget_ms / 1000  # the stack's admission budget (its default)


@dataclass(frozen=True)
class Promise:
    name: str
    met: bool
    detail: str


PATH = "/v1/models/digits:predict"


def generate(url: str, body: Path, expect: str, seconds: float, *args: str, path: str = PATH) -> dict:
    """Run the load generator in its own process and session; its summary (JSON), with
    ``client_cores``: the CPUs it used on average (user + system time over the run)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "bench.openloop", "--url", url, "--path", path, "--body", str(body),
         "--expect", expect,
         "--max-connections", "2048", "--seconds", str(seconds), *args],
        cwd=REPO, capture_output=True, text=True, timeout=seconds + 120, check=True,
        start_new_session=True,  # a scheduling group of its own (stack.supervisor.raise_session_priority)
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(done.stdout), "client_cores": round(used / seconds, 3)}


def model_call_p99(replicas: list[str]) -> float:
    """The p99 of one model call (one batch) on the replicas, as the upper bound of its
    histogram bucket (``modelserver_model_call_seconds``)."""
    buckets: dict[float, float] = {}
    for replica in replicas:
        for line in requests.get(f"{replica}/metrics", timeout=10).text.splitlines():
            if line.startswith("modelserver_model_call_seconds_bucket{"):
                bound = float(line.split('le="', 1)[1].split('"', 1)[0])
                buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    total = buckets[float("inf")]
    return next(bound for bound, count in sorted(buckets.items()) if count >= 0.99 * total)


def run(url: str, body: Path, expect: str, *, concurrency: int, replicas: list[str],
        seconds: float, calibration_seconds: float = 8.0, path: str = PATH) -> dict:
    """Measure capacity (closed loop at ``concurrency``), then offer twice it for ``seconds``.

    The summary holds the generator's figures plus ``capacity``, ``budget`` and ``batch_p99``.
    """
    calibration = generate(url, body, expect, calibration_seconds, "--concurrency", str(concurrency), path=path)
    capacity = calibration["served_rate"]
    if capacity <= 0 or calibration["errors"]:
        raise RuntimeError(f"calibration failed: {calibration}")
    result = generate(url, body, expect, seconds, "--rate", str(round(2 * capacity, 1)), path=path)
    result.pop("served_per_second", None)
    # Sending twice as much costs the generator twice the CPU, which on shared cores it takes
    # from the stack (measured: 0.07 of a core at capacity, 0.16 at twice it, of 2 cores).
    # Real clients bring their own machines, so the stack is held to what its cores allowed.
    cores = len(os.sched_getaffinity(0))
    share = (cores - result["client_cores"]) / (cores - calibration["client_cores"])
    return {"capacity": capacity, "capacity_left": round(capacity * min(1.0, share), 1),
            "cores": cores, "calibration_client_cores": calibration["client_cores"],
            "budget": BUDGET, "batch_p99": model_call_p99(replicas), **result}


def promises(s: dict) -> list[Promise]:
    """Each promise of an overload run, met or not, with the figures that decide it."""
    answered = sum(s["statuses"].values())
    shed_p99, served_p99 = s["shed_service_p99"], s["served_service_p99"]
    bound = s["budget"] + s["batch_p99"]
    return [
        Promise("no errors", not s["errors"], f"errors {s['errors']}"),
        Promise("only 200, 429 and 503", set(s["statuses"]) <= {"200", "429", "503"}, f"statuses {s['statuses']}"),
        Promise("no wrong answers", s["wrong_answers"] == 0, f"{s['wrong_answers']} wrong"),
        Promise("every refusal has Retry-After", s["shed_without_retry_after"] == 0,
                f"{s['shed_without_retry_after']} without"),
        Promise("every request answered", answered == s["offered"] - s["unsent"],
                f"{answered} answers to {s['offered'] - s['unsent']} sent"),
        # The overload really happened: the generator's own pool may run dry for a sliver of the
        # run on a busy machine (counted as unsent, not blamed on the stack), never for most of it.
        Promise("offered >= 1.6x capacity", s["sent_rate"] >= 1.6 * s["capacity"],
                f"sent {s['sent_rate']:.0f}/s against capacity {s['capacity']:.0f}/s"),
        Promise("served >= 0.8x capacity", s["served_rate"] >= 0.8 * s["capacity_left"],
                f"served {s['served_rate']:.0f}/s = {s['served_rate'] / s['capacity']:.2f}x of "
                f"{s['capacity']:.0f}/s, {s['served_rate'] / s['capacity_left']:.2f}x of the "
                f"{s['capacity_left']:.0f}/s the cores left to the stack beside the generator "
                f"({s['calibration_client_cores']:.2f} -> {s['client_cores']:.2f} of {s['cores']})"),
        # Latency as the stack gave it: from the send, not from the schedule the generator may lag.
        Promise(f"shed p99 <= {SHED_P99 * 1000:.0f} ms", shed_p99 is None or shed_p99 <= SHED_P99,
                "nothing shed" if shed_p99 is None else f"p50 {s['shed_service_p50'] * 1000:.1f} ms, "
                f"p99 {shed_p99 * 1000:.1f} ms"),
        Promise("served p99 <= budget + one batch", served_p99 is not None and served_p99 <= bound,
                f"p50 {(s['served_service_p50'] or 0) * 1000:.0f} ms, p99 {(served_p99 or 0) * 1000:.0f} ms "
                f"against {s['budget'] * 1000:.0f} + {s['batch_p99'] * 1000:.0f} ms"),
    ]
