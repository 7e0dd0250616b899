"""The shared load loop, against a real local HTTP server (the standard library's)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from stack.launch import free_port
from stack.load import Load, Threads
from tests.support.standin import serving


@pytest.fixture
def server() -> Iterator[str]:
    statuses = itertools.cycle((200, 200, 503))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            status = next(statuses)
            body = b"v2" if status == 200 else b"busy"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url


def test_load_counts_every_outcome_and_stops_at_the_request_cap(server):
    with Load(lambda s: s.get(server, timeout=5), concurrency=3, max_requests=60,
              classify=lambda r: r.text) as load:
        load.wait_for(60, timeout=30)
    result = load.result
    assert result.total == 60 and len(result.latencies) == 60
    assert result.statuses == {200: 40, 503: 20}
    assert result.failures == 20 and result.seen == {"v2": 40}  # classify sees only the 200s


def test_transport_errors_are_counted_by_type_not_raised():
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens
    with Load(lambda s: s.get(url, timeout=2), concurrency=2, max_requests=10) as load:
        load.wait_for(10, timeout=30)
    assert load.result.errors == {"ConnectionError": 10} and load.result.total == 10


def test_threads_end_at_the_time_limit_each_with_its_own_seeded_source():
    draws: dict[int, list[float]] = {}
    lock = threading.Lock()

    def step(_session, rng) -> None:
        with lock:
            draws.setdefault(threading.get_ident(), []).append(rng.random())
        time.sleep(0.01)

    started = time.monotonic()
    Threads(step, concurrency=3, max_seconds=0.5).start().join(grace=5)
    assert time.monotonic() - started < 5
    firsts = {values[0] for values in draws.values()}
    assert len(draws) == 3 and len(firsts) == 3  # three threads, three different seeds
