"""Adaptive batching with admission control, for one model version in one worker process.

Concurrent requests are merged into one model call, then each gets exactly its own rows back.
There is no batching thread: the first request to arrive while the model is idle runs the
batch itself ("leader"), so a lone request pays no hand-off between threads. Requests that
arrive while a batch runs queue up; when the leader is done it promotes the oldest waiting
request to lead the next batch, which takes everything queued (up to ``max_batch_size`` rows).
The batch size thus adapts to load with no timer: one row when idle, large under pressure.

Admission control keeps the queue honest: a request whose expected wait (the running batch's
remaining time, the rows ahead of it x recent seconds per row, and its own model call), plus the
time it already waited in the server before reaching the batcher, exceeds the budget is refused
at once with 503 + Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.errors import GatewayTimeout, Overloaded, ServerError, ServingError

Run = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
# Called after every model call: (rows in the batch, requests in it, seconds it took, and for
# each request the seconds from its arrival to the start of that call).
Observer = Callable[[int, int, float, list[float]], None]
# One model call's seconds assumed until a measurement says otherwise.
DEFAULT_BATCH_SECONDS = 0.001


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 64
    max_latency: float = 0.0  # seconds a leader may wait for company before running
    queue_budget: float = 1.0  # seconds of expected wait beyond which requests are refused
    max_queue_rows: int = 4096


@dataclass(eq=False)
class Timing:
    """Where one request's time went in the batcher (``time.monotonic()`` readings), for its
    trace and the statistics extension: queued from ``queued`` to ``started``, then the model
    call of its batch until ``ended``."""

    queued: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    batch_rows: int = 0
    batch_requests: int = 0

    @property
    def queue(self) -> float:
        return max(0.0, self.started - self.queued) if self.ended else 0.0

    @property
    def compute(self) -> float:
        return self.ended - self.started if self.ended else 0.0


@dataclass(eq=False)
class _Request:
    arrays: Sequence[np.ndarray]
    rows: int
    key: tuple[tuple[int, ...], ...]  # trailing shapes: only equal keys can share a batch
    arrived: float  # time.monotonic() at the server, for the queue wait
    deadline: float
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    result: list[np.ndarray] | None = None
    error: BaseException | None = None
    timing: Timing | None = None


class Batcher:
    def __init__(
        self, run: Run, policy: BatchPolicy, *, batch_seconds: float = DEFAULT_BATCH_SECONDS,
        batch_rows: int = 1, observe: Observer | None = None,
    ) -> None:
        self._run = run
        self._policy = policy
        self._observe = observe
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._running = False
        # Recent seconds per model call and per row (exponentially weighted), seeded by the
        # caller's measurement of one batch, for expected-wait estimates.
        self._call_seconds = batch_seconds
        self._row_seconds = batch_seconds / max(1, batch_rows)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def expected_wait(self, rows: int = 0) -> float:
        """Seconds until a newcomer of ``rows`` rows would have its answer: the running batch,
        the rows queued ahead, and its own batch -- a whole model call, however few its rows."""
        running = self._call_seconds if self._running else 0.0
        own = max(self._call_seconds, rows * self._row_seconds) if rows else 0.0
        return running + self._queued_rows * self._row_seconds + own

    def submit(
        self, arrays: Sequence[np.ndarray], timeout: float, arrived: float | None = None,
        timing: Timing | None = None,
    ) -> list[np.ndarray]:
        """Run ``arrays`` (one per input, same row count) through the model, batched with others.

        ``arrived``: ``time.monotonic()`` when the request reached the server (default: now);
        the timeout and the admission budget both count from then. ``timing``, when given, is
        filled in with the request's queue wait and model call.
        """
        now = time.monotonic()
        arrived = now if arrived is None else min(arrived, now)
        rows = int(arrays[0].shape[0])
        request = _Request(
            arrays=arrays,
            rows=rows,
            key=tuple(a.shape[1:] for a in arrays),
            arrived=arrived,
            deadline=arrived + timeout,
            timing=timing,
        )
        if timing is not None:
            timing.queued = now
        with self._lock:
            self._admit(request, waited=now - arrived)
            self._queue.append(request)
            self._queued_rows += rows
            lead = not self._running
            if lead:
                self._running = True
            else:
                self._arrived.notify()
        if lead:
            self._lead(request)
        else:
            self._follow(request)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _admit(self, request: _Request, waited: float) -> None:
        # A request that would wait behind others, or that already waited past the budget
        # for a thread to take it, is refused when its total wait would exceed the budget.
        # One that would run at once and is still within the budget is always taken.
        policy = self._policy
        wait = self.expected_wait(request.rows)
        if self._queued_rows + request.rows > policy.max_queue_rows or (
            (self._queue or waited > policy.queue_budget) and waited + wait > policy.queue_budget
        ):
            raise Overloaded(
                f"overloaded: expected wait {(waited + wait) * 1000:.0f} ms exceeds the "
                f"{policy.queue_budget * 1000:.0f} ms budget; retry later",
                retry_after=max(1.0, wait),
            )

    def _follow(self, request: _Request) -> None:
        while True:
            if not request.wake.wait(max(0.0, request.deadline - time.monotonic())):
                with self._lock:
                    if not request.lead and not request.finished:
                        if request in self._queue:
                            self._queue.remove(request)
                            self._queued_rows -= request.rows
                            raise GatewayTimeout("request timed out waiting for the model")
                # Already in a running batch (its result is moments away) or promoted to lead.
                request.wake.wait()
            if request.finished:
                return
            # Promoted: the previous leader handed us the queue.
            request.wake.clear()
            request.lead = False
            self._lead(request)
            return

    def _lead(self, own: _Request) -> None:
        while True:
            batch = self._take()
            self._execute(batch)
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                if own.finished:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake.set()
                    return

    def _take(self) -> list[_Request]:
        policy = self._policy
        with self._lock:
            if policy.max_latency > 0 and self._queued_rows < policy.max_batch_size:
                until = time.monotonic() + policy.max_latency
                while self._queued_rows < policy.max_batch_size:
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._arrived.wait(left)
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            kept: deque[_Request] = deque()
            while self._queue:
                candidate = self._queue.popleft()
                if candidate.key == first.key and rows + candidate.rows <= policy.max_batch_size:
                    batch.append(candidate)
                    rows += candidate.rows
                else:
                    kept.append(candidate)
            self._queue = kept
            self._queued_rows -= rows
            return batch

    def _execute(self, batch: list[_Request]) -> None:
        begun = time.monotonic()
        started = time.perf_counter()
        try:
            if len(batch) == 1:
                outputs = self._run(batch[0].arrays)
                batch[0].result = outputs
            else:
                merged = [
                    np.concatenate([r.arrays[i] for r in batch])
                    for i in range(len(batch[0].arrays))
                ]
                outputs = self._run(merged)
                total = sum(r.rows for r in batch)
                if any(o.shape[0] != total for o in outputs):
                    raise ServerError("model returned a different number of rows than it was given")
                offset = 0
                for r in batch:
                    r.result = [o[offset : offset + r.rows] for o in outputs]
                    offset += r.rows
        except Exception as error:  # noqa: BLE001  (model failures are data here)
            if len(batch) == 1:
                batch[0].error = _as_serving_error(error)
            else:
                # One bad request must not fail the others: run each alone to find it.
                for r in batch:
                    self._execute([r])
                return
        finally:
            seconds = time.perf_counter() - started
        rows = sum(r.rows for r in batch)
        self._call_seconds += 0.2 * (seconds - self._call_seconds)
        self._row_seconds += 0.2 * (seconds / rows - self._row_seconds)
        if self._observe is not None:
            self._observe(rows, len(batch), seconds, [begun - r.arrived for r in batch])
        for r in batch:
            if r.timing is not None:
                t = r.timing
                t.started, t.ended, t.batch_rows, t.batch_requests = begun, begun + seconds, rows, len(batch)
            r.finished = True
            r.wake.set()


def _as_serving_error(error: Exception) -> ServingError:
    if isinstance(error, ServingError):
        return error
    return ServerError(f"model call failed: {type(error).__name__}")

