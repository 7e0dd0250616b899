"""The batcher against a plain numpy "model": merging, splitting, failures, deadlines, admission."""

import threading
import time

import numpy as np
import pytest

from services.common.errors import ClientError, GatewayTimeout, Unavailable
from services.inference.batching import Batcher, BatchPolicy


class RecordingModel:
    """y = 2x + row sum; records each call's rows and thread; refuses negative inputs."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.threads: list[str] = []
        self.delay = delay
        self.gate: threading.Event | None = None

    def __call__(self, arrays):
        (x,) = arrays
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append(x.shape[0])
        self.threads.append(threading.current_thread().name)
        if (x < 0).any():
            raise ClientError("negative input")
        time.sleep(self.delay)
        return [2 * x + x.reshape(len(x), -1).sum(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))]


def expected(x):
    return 2 * x + x.reshape(len(x), -1).sum(axis=1).reshape((-1,) + (1,) * (x.ndim - 1))


def run_concurrently(batcher, inputs, timeout=10.0):
    results: dict[int, object] = {}
    start = threading.Barrier(len(inputs))

    def worker(i, x):
        start.wait()
        try:
            results[i] = batcher.submit([x], timeout)[0]
        except Exception as error:  # noqa: BLE001
            results[i] = error

    threads = [threading.Thread(target=worker, args=(i, x)) for i, x in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_a_lone_request_runs_at_once_in_its_own_thread():
    model = RecordingModel()
    batcher = Batcher(model, BatchPolicy(max_batch_size=8))
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(batcher.submit([x], 1.0)[0], expected(x))
    assert model.calls == [1]
    assert model.threads == [threading.current_thread().name]


def test_concurrent_requests_are_merged_and_each_gets_exactly_its_rows():
    model = RecordingModel(delay=0.005)
    batcher = Batcher(model, BatchPolicy(max_batch_size=16))
    rng = np.random.default_rng(0)
    # Mixed request sizes: single rows and small batches, all with distinct values.
    inputs = [rng.random((1 + i % 3, 4), dtype=np.float32) for i in range(48)]
    results = run_concurrently(batcher, inputs)
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(results[i], expected(x))
    assert sum(model.calls) == sum(len(x) for x in inputs)
    assert max(model.calls) > 3, f"nothing was batched: {model.calls}"
    assert max(model.calls) <= 16


def test_requests_with_different_trailing_shapes_are_never_merged():
    model = RecordingModel(delay=0.01)
    batcher = Batcher(model, BatchPolicy(max_batch_size=64))
    inputs = [np.full((1, 2 + i % 2), i, np.float32) for i in range(20)]
    results = run_concurrently(batcher, inputs)
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(results[i], expected(x))


def test_one_bad_request_fails_only_itself():
    model = RecordingModel(delay=0.002)
    batcher = Batcher(model, BatchPolicy(max_batch_size=32))
    inputs = [np.full((1, 2), float(i), np.float32) for i in range(24)]
    inputs[7] = np.full((1, 2), -1.0, np.float32)
    model.gate = threading.Event()  # hold the first call so the rest queue up and batch
    threading.Timer(0.2, model.gate.set).start()
    results = run_concurrently(batcher, inputs)
    assert isinstance(results[7], ClientError)
    for i, x in enumerate(inputs):
        if i != 7:
            np.testing.assert_array_equal(results[i], expected(x))
    assert max(model.calls) > 1


def test_a_request_that_waits_past_its_deadline_gets_504_and_leaves_the_queue():
    model = RecordingModel()
    model.gate = threading.Event()
    batcher = Batcher(model, BatchPolicy(max_batch_size=1))
    leader = threading.Thread(target=batcher.submit, args=([np.ones((1, 1), np.float32)], 10.0))
    leader.start()
    time.sleep(0.05)  # the leader is now stuck inside the model
    with pytest.raises(GatewayTimeout):
        batcher.submit([np.ones((1, 1), np.float32)], 0.1)
    assert batcher.queued_rows == 0
    model.gate.set()
    leader.join(5)
    assert model.calls == [1]


def test_admission_refuses_when_the_expected_wait_exceeds_the_budget():
    model = RecordingModel()
    model.gate = threading.Event()
    # Each batch "takes" 0.5 s and holds 1 row: two queued rows already mean > 0.6 s.
    batcher = Batcher(model, BatchPolicy(max_batch_size=1, queue_budget=0.6), batch_seconds=0.5, batch_rows=1)
    threads = [
        threading.Thread(target=batcher.submit, args=([np.ones((1, 1), np.float32)], 10.0))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
        time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(Unavailable) as refused:
        batcher.submit([np.ones((1, 1), np.float32)], 10.0)
    assert time.monotonic() - started < 0.05, "refusal must be immediate"
    assert refused.value.retry_after and refused.value.retry_after >= 1
    assert refused.value.headers()["Retry-After"].isdigit()
    model.gate.set()
    for t in threads:
        t.join(5)


def test_queue_rows_are_bounded_whatever_the_wait():
    model = RecordingModel()
    model.gate = threading.Event()
    batcher = Batcher(model, BatchPolicy(max_batch_size=64, max_queue_rows=4), batch_seconds=0.0)
    leader = threading.Thread(target=batcher.submit, args=([np.ones((1, 1), np.float32)], 10.0))
    leader.start()
    time.sleep(0.05)
    with pytest.raises(Unavailable):
        batcher.submit([np.ones((5, 1), np.float32)], 10.0)
    model.gate.set()
    leader.join(5)


def test_max_latency_lets_a_leader_wait_for_company():
    model = RecordingModel()
    batcher = Batcher(model, BatchPolicy(max_batch_size=4, max_latency=0.5))
    inputs = [np.full((1, 1), i, np.float32) for i in range(4)]
    results = run_concurrently(batcher, inputs)
    assert all(not isinstance(r, Exception) for r in results.values())
    assert model.calls == [4], "the first request should have waited for the other three"


def test_time_already_waited_in_the_server_counts_against_the_budget():
    model = RecordingModel()
    batcher = Batcher(model, BatchPolicy(max_batch_size=8, queue_budget=0.2), batch_seconds=0.01)
    x = np.ones((1, 1), np.float32)
    # Waited 0.1 s for a thread, model idle: within the budget, runs.
    np.testing.assert_array_equal(batcher.submit([x], 1.0, arrived=time.monotonic() - 0.1)[0], expected(x))
    # Waited 0.3 s for a thread (the worker's queue was full): refused at once, even though
    # the model itself is idle -- the client has already waited longer than the budget.
    with pytest.raises(Unavailable):
        batcher.submit([x], 1.0, arrived=time.monotonic() - 0.3)
    assert model.calls == [1]


def test_the_timeout_counts_from_arrival():
    model = RecordingModel()
    model.gate = threading.Event()
    batcher = Batcher(model, BatchPolicy(max_batch_size=1, queue_budget=10.0))
    leader = threading.Thread(target=batcher.submit, args=([np.ones((1, 1), np.float32)], 10.0))
    leader.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout):
        batcher.submit([np.ones((1, 1), np.float32)], 0.5, arrived=time.monotonic() - 0.4)
    assert time.monotonic() - started < 0.3, "0.4 of its 0.5 s were spent before it arrived here"
    model.gate.set()
    leader.join(5)


def test_a_newcomers_own_model_call_counts_as_a_whole_call():
    # A call takes 0.1 s whatever its rows (64 rows: ~1.6 ms per row). Behind a running call and
    # one queued row, a newcomer waits ~0.1 s for the running call and ~0.1 s for its own:
    # over a 0.15 s budget, although 2 rows x 1.6 ms looks tiny.
    model = RecordingModel()
    model.gate = threading.Event()
    policy = BatchPolicy(max_batch_size=64, queue_budget=0.15)
    batcher = Batcher(model, policy, batch_seconds=0.1, batch_rows=64)
    threads = [threading.Thread(target=batcher.submit, args=([np.ones((1, 1), np.float32)], 10.0))
               for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    assert batcher.expected_wait(1) > 0.15
    with pytest.raises(Unavailable):
        batcher.submit([np.ones((1, 1), np.float32)], 10.0)
    model.gate.set()
    for t in threads:
        t.join(5)
