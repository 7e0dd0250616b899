"""Processes killed outright (SIGKILL) under load through nginx: no client sees an error,
since every request here is a prediction and safe to retry (nginx retries a broken gateway
connection, the gateway a broken replica connection), and the killed piece comes back.

(A replica's Gunicorn master alone is killed in tests/e2e/test_stack.py.)"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from soak import procs
from stack.load import Load
from tests.e2e.conftest import wait_ready
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

EXAMPLE = (REPO / "examples/digit-0.json").read_bytes()


def predict(url: str):
    def send(session: requests.Session) -> requests.Response:
        return session.post(f"{url}/v1/models/digits:predict", data=EXAMPLE, timeout=30)

    return send


def kill_under_load(url: str, victims: list[int], after: int = 400) -> None:
    with Load(predict(url), concurrency=8, max_seconds=90, max_requests=20_000) as load:
        load.wait_for(150)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        load.wait_for(load.result.total + after, timeout=75)
    result = load.result
    assert result.total >= 150 + after, f"load stalled: {result.statuses} {result.errors}"
    assert result.failures == 0, (result.statuses, result.errors)


def wait_for_workers(master: int, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(workers := procs.children(master)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return workers


def test_sigkill_of_an_inference_worker(local_stack):
    url, local = local_stack
    master = local.state["inference-2_pid"]
    (worker,) = wait_for_workers(master, 1)
    kill_under_load(url, [worker])
    replacement = wait_for_workers(master, 1)
    assert replacement and replacement != [worker]
    wait_ready(local.state["inference"][1], timeout=90)


def test_sigkill_of_a_whole_inference_replica(local_stack):
    url, local = local_stack
    master = local.state["inference-1_pid"]
    kill_under_load(url, procs.tree(master))  # master and workers at once, as an OOM kill of the pod
    wait_ready(local.state["inference"][0], timeout=120)  # restarted by the launcher


def test_sigkill_of_a_gateway_worker(local_stack):
    url, local = local_stack
    master = local.state["gateway_pid"]
    workers = wait_for_workers(master, 2)
    kill_under_load(url, workers[:1])
    assert len(wait_for_workers(master, 2)) == 2
    wait_ready(local.state["gateway"], timeout=60)
