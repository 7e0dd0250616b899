"""Token buckets: the arithmetic, the 429, and one budget shared by every worker process."""

from __future__ import annotations

import multiprocessing

import pytest

from services.common.errors import TooManyRequests
from services.gateway import ratelimit
from services.gateway.ratelimit import RateLimiter, take


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_arithmetic():
    assert take(3.0, 0.0, 0.0, rate=2.0, burst=3.0) == (True, 2.0, 0.0)
    assert take(0.5, 0.0, 0.0, rate=2.0, burst=3.0) == (False, 0.5, 0.25)
    assert take(0.0, 0.0, 10.0, rate=2.0, burst=3.0) == (True, 2.0, 0.0)  # refills up to the burst
    assert take(0.0, 5.0, 4.0, rate=2.0, burst=3.0)[0] is False  # a clock step back adds nothing


@pytest.fixture
def shared_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ratelimit.ENV, raising=False)
    path = ratelimit.prepare_shared_file()
    yield path
    ratelimit.remove_shared_file()


def test_burst_then_429_with_retry_after_then_refill(shared_file):
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3.0, clock=clock)
    for _ in range(3):
        limiter.check("key-a")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("key-a")
    assert refused.value.status == 429
    assert refused.value.headers() == {"Retry-After": "1"}
    limiter.check("key-b")  # another key has its own bucket
    clock.now += 0.5
    limiter.check("key-a")  # one token back after 1/rate seconds
    with pytest.raises(TooManyRequests):
        limiter.check("key-a")


def _spend(path: str, attempts: int, results: multiprocessing.Queue) -> None:
    limiter = RateLimiter(rate=1.0, burst=50.0, path=path, clock=lambda: 5000.0)
    allowed = 0
    for _ in range(attempts):
        try:
            limiter.check("key-shared")
            allowed += 1
        except TooManyRequests:
            pass
    results.put(allowed)


def test_worker_processes_share_one_bucket(shared_file):
    context = multiprocessing.get_context("fork")  # as Gunicorn makes its workers
    results = context.Queue()
    workers = [context.Process(target=_spend, args=(shared_file, 40, results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert sum(results.get(timeout=5) for _ in workers) == 50  # the burst, not 3 x the burst
