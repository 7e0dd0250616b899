"""The soak's request mix, and what counts as a failure of the stack.

Valid TF Serving and V2 (JSON and binary) predictions, invalid bodies, unknown models and
versions, from several threads at once. A 4xx for an invalid request is the right answer and a
503/429 with Retry-After is allowed shedding; a 5xx otherwise, a wrong answer, a missing
Retry-After or a transport error is an error of the stack.
"""

from __future__ import annotations

import json
import random
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

from stack import load

REPO = Path(__file__).resolve().parents[1]
PIXELS = json.loads((REPO / "examples/digit-0.json").read_text())["instances"][0]
FLAT = [v for row in PIXELS for col in row for v in col]


@dataclass(frozen=True)
class Call:
    kind: str  # what the report counts it as
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    expect: tuple[int, ...]  # statuses that are right for it (besides 503/429)


def _v2_binary() -> Call:
    header = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}]}).encode()
    return Call("v2-binary", "POST", "/v2/models/digits/infer", header + struct.pack("<64f", *FLAT),
                {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))},
                (200,))


MIX: list[tuple[float, Call]] = [
    (0.45, Call("tfs", "POST", "/v1/models/digits:predict", json.dumps({"instances": [PIXELS]}).encode(), {}, (200,))),
    (0.2, Call("v2-json", "POST", "/v2/models/digits/infer", json.dumps({"inputs": [
        {"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": FLAT}]}).encode(),
        {"Content-Type": "application/json"}, (200,))),
    (0.1, _v2_binary()),
    (0.05, Call("batch-16", "POST", "/v1/models/digits:predict", json.dumps({"instances": [PIXELS] * 16}).encode(),
                {}, (200,))),
    (0.08, Call("invalid-json", "POST", "/v1/models/digits:predict", b'{"instances": [[1, 2', {}, (400,))),
    (0.05, Call("invalid-shape", "POST", "/v2/models/digits/infer", json.dumps({"inputs": [
        {"name": "pixels", "shape": [10**9, 8, 8, 1], "datatype": "FP32", "data": [0]}]}).encode(),
        {"Content-Type": "application/json"}, (400,))),
    (0.04, Call("unknown-model", "POST", "/v1/models/nope:predict", b'{"instances": [1]}', {}, (404,))),
    (0.03, Call("status", "GET", "/v1/models/digits", None, {}, (200,))),
]


def correct(call: Call, response: requests.Response) -> bool:
    if response.status_code != 200:
        return "error" in response.json()
    if call.kind in ("tfs", "batch-16"):
        rows = response.json()["predictions"]
        return all(max(range(10), key=row.__getitem__) == 0 for row in rows)
    if call.kind in ("v2-json", "v2-binary"):  # binary in; the answer is JSON unless binary was asked for
        data = response.json()["outputs"][0]["data"]
        return max(range(10), key=data.__getitem__) == 0
    return True


@dataclass
class Tally:
    requests: Counter = field(default_factory=Counter)  # kind -> sent
    outcomes: Counter = field(default_factory=Counter)  # "ok", "refused-as-expected", "shed", errors
    windows: dict[int, list[float]] = field(default_factory=dict)  # minute-ish window -> latencies
    lock: threading.Lock = field(default_factory=threading.Lock)


def classify(call: Call, response: requests.Response) -> str:
    status = response.status_code
    if status in (429, 503):
        return "shed" if response.headers.get("Retry-After") else "error: shed without Retry-After"
    if status not in call.expect:
        return f"error: {status} for {call.kind}"
    try:
        right = correct(call, response)
    except (ValueError, KeyError, IndexError, TypeError):
        right = False
    if not right:
        return f"error: wrong answer for {call.kind}"
    return "ok" if status == 200 else "refused as expected"


def run(url: str, seconds: float, concurrency: int, window: float, tally: Tally,
        stop: threading.Event, max_requests: int = 10_000_000) -> None:
    """``concurrency`` threads sending the mix until ``seconds`` pass or ``stop`` is set."""
    weights = [w for w, _ in MIX]
    calls = [c for _, c in MIX]
    started = time.monotonic()

    def step(session: requests.Session, rng: random.Random) -> None:
        call = rng.choices(calls, weights)[0]
        sent = time.monotonic()
        try:
            response = session.request(call.method, url + call.path, data=call.body, headers=call.headers,
                                       timeout=30)
            outcome = classify(call, response)
        except requests.RequestException as error:
            outcome = f"error: {type(error).__name__}"
        elapsed = time.monotonic() - sent
        with tally.lock:
            tally.requests[call.kind] += 1
            tally.outcomes[outcome] += 1
            if outcome == "ok":
                tally.windows.setdefault(int((sent - started) // window), []).append(elapsed)

    threads = load.Threads(step, concurrency=concurrency, max_requests=max_requests, max_seconds=seconds, stop=stop)
    threads.start().join()
