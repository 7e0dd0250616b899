"""Overload and shutdown of a local stack with tight limits: fast JSON refusals, nothing left over."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from stack.load import Load
from tests.e2e.conftest import start_stack
from tests.support.servers import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tight_stack(tmp_path_factory, digits_version):
    if os.environ.get("E2E_BASE_URL"):
        pytest.skip("starts its own local stack with tight limits")
    url, local = start_stack(
        tmp_path_factory.mktemp("tight"), digits_version,
        "--replicas", "1", "--rate-limit", "100r/s", "--rate-burst", "20",
    )
    yield url, local
    local.stop()


def test_overload_gets_fast_json_refusals_and_service_resumes(tight_stack):
    url, _ = tight_stack
    body = (REPO / "examples/digit-0.json").read_bytes()

    def send(session: requests.Session) -> requests.Response:
        return session.post(f"{url}/v1/models/digits:predict", data=body, timeout=30)

    with Load(send, concurrency=24, max_seconds=8, max_requests=4000) as load:
        time.sleep(6)
    result = load.result
    assert not result.errors, result.errors
    assert set(result.statuses) <= {200, 429, 503}, result.statuses
    assert result.statuses[429] + result.statuses[503] > 0, "nothing was refused"
    assert result.statuses[200] > 0
    refused = requests.Session()
    time.sleep(1.5)  # let the per-client bucket refill
    response = refused.post(f"{url}/v1/models/digits:predict", data=body, timeout=30)
    assert response.status_code == 200


def test_a_rate_limited_answer_is_json_with_retry_after(tight_stack):
    """A burst well past rate + burst arrives at once, so some of it is over the limit.

    Sent concurrently: a loop of sequential requests stays under 100 r/s whenever
    one request takes more than 10 ms, as it does on a busy machine.
    """
    url, _ = tight_stack
    body = (REPO / "examples/digit-0.json").read_bytes()
    clients = 60  # the bucket holds 20 + what refills while they arrive
    start = threading.Barrier(clients)

    def send(_: int) -> requests.Response:
        start.wait()
        return requests.post(f"{url}/v1/models/digits:predict", data=body, timeout=30)

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, range(clients)))
    limited = [r for r in answers if r.status_code == 429]
    assert limited, sorted(r.status_code for r in answers)
    response = limited[0]
    assert response.headers["Content-Type"].startswith("application/json")
    assert "error" in response.json() and response.headers["Retry-After"].isdigit()


def test_ctrl_c_stops_every_process(tmp_path, digits_version):
    if os.environ.get("E2E_BASE_URL"):
        pytest.skip("starts its own local stack")
    url, local = start_stack(tmp_path, digits_version, "--replicas", "1")
    state = local.state
    pids = [v for k, v in state.items() if k.endswith("_pid") and k != "launcher_pid"]
    children = set(pids)
    for pid in pids:  # the Gunicorn workers and nginx workers too
        children |= {int(p) for p in _children(pid)}
    assert requests.post(f"{url}/v1/models/digits:predict", data=(REPO / "examples/digit-0.json").read_bytes()).ok
    assert local.stop(signal.SIGINT) == 0
    time.sleep(0.5)
    alive = [pid for pid in children if _alive(pid)]
    assert not alive, f"left running: {alive}"
    assert not (local.run_dir / "stack.json").exists()
    assert json.dumps(state)  # state was readable while running


def _children(pid: int) -> list[str]:
    try:
        return open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False
