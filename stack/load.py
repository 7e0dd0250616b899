"""Bounded concurrent load from threads, for the tests run under traffic and for `make soak`.

One loop for both: ``concurrency`` threads, each with its own HTTP session and seeded random
source, repeating a step until a stop event, a request cap or a time limit; then every thread
is joined. :class:`Load` is that loop with every outcome counted (statuses, transport errors by
type, a label per answer, latencies). The benchmark's own load is wrk and an open-loop asyncio
generator (bench/), chosen for their small CPU share at high rates; this one is for correctness
under traffic.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

Step = Callable[[requests.Session, random.Random], None]


class Threads:
    """``concurrency`` threads repeating ``step(session, rng)`` until stopped, ``max_requests``
    steps in all or ``max_seconds``. A context manager; :meth:`join` waits for the time limit."""

    def __init__(
        self,
        step: Step,
        *,
        concurrency: int = 8,
        max_requests: int = 100_000,
        max_seconds: float = 120,
        stop: threading.Event | None = None,
    ) -> None:
        self._step = step
        self._concurrency = concurrency
        self._max_requests = max_requests
        self._max_seconds = max_seconds
        self.stopped = stop or threading.Event()
        self._lock = threading.Lock()
        self._taken = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> Threads:
        deadline = time.monotonic() + self._max_seconds
        for seed in range(self._concurrency):
            thread = threading.Thread(target=self._run, args=(deadline, seed), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __enter__(self) -> Threads:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopped.set()
        self.join(60)

    def join(self, grace: float = 60) -> None:
        """Wait for every thread (the time limit ends them), ``grace`` seconds past it at most."""
        for thread in self._threads:
            thread.join(self._max_seconds + grace)

    def _take(self) -> bool:
        with self._lock:
            if self._taken >= self._max_requests:
                return False
            self._taken += 1
            return True

    def _run(self, deadline: float, seed: int) -> None:
        session, rng = requests.Session(), random.Random(seed)
        while not self.stopped.is_set() and time.monotonic() < deadline and self._take():
            self._step(session, rng)


@dataclass
class LoadResult:
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport failures, by exception type
    seen: Counter = field(default_factory=Counter)  # whatever `classify` returns for 200s
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failures(self) -> int:
        return self.total - self.statuses.get(200, 0)


class Load:
    """``concurrency`` threads repeating ``send`` until stopped, ``max_requests`` or ``max_seconds``,
    counting every outcome in :attr:`result`."""

    def __init__(
        self,
        send: Callable[[requests.Session], requests.Response],
        *,
        concurrency: int = 8,
        max_requests: int = 100_000,
        max_seconds: float = 120,
        classify: Callable[[requests.Response], object] | None = None,
    ) -> None:
        self._send = send
        self._classify = classify
        self._lock = threading.Lock()
        self._threads = Threads(self._once, concurrency=concurrency, max_requests=max_requests,
                                max_seconds=max_seconds)
        self.result = LoadResult()

    def __enter__(self) -> Load:
        self._threads.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._threads.stop()
        return self.result

    def wait_for(self, requests_done: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.result.total < requests_done and time.monotonic() < deadline:
            time.sleep(0.05)

    def _once(self, session: requests.Session, _rng: random.Random) -> None:
        started = time.perf_counter()
        try:
            response = self._send(session)
        except requests.RequestException as error:
            with self._lock:
                self.result.errors[type(error).__name__] += 1
            return
        elapsed = time.perf_counter() - started
        label = self._classify(response) if self._classify and response.status_code == 200 else None
        with self._lock:
            self.result.statuses[response.status_code] += 1
            self.result.latencies.append(elapsed)
            if label is not None:
                self.result.seen[label] += 1

    def wait_until_only(self, label: object, timeout: float, quiet: float = 1.5) -> float:
        """Seconds until every answer for ``quiet`` seconds was ``label`` (e.g. a new version).

        Returns ``timeout`` (or a little more) if that never happened, so callers can assert on it.
        """
        started = time.monotonic()
        last_other, last_change = self._others(label), time.monotonic()
        while time.monotonic() - started < timeout:
            time.sleep(0.1)
            others = self._others(label)
            if others != last_other:
                last_other, last_change = others, time.monotonic()
            elif self.result.seen[label] and time.monotonic() - last_change >= quiet:
                return last_change - started
        return time.monotonic() - started

    def _others(self, label: object) -> int:
        with self._lock:
            return sum(count for key, count in self.result.seen.items() if key != label)
