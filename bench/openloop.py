"""An open-loop HTTP load generator: requests leave on a fixed schedule, answered or not.

A closed loop (N clients, each waiting for its answer) slows down with the server and never
offers more than it can take, so it cannot test overload. Here request i is due at
``start + i / rate``; its latency counts from that moment, so time spent waiting for a free
connection counts too (no coordinated omission). Raw HTTP/1.1 over asyncio keep-alive
connections: about 20 µs of client CPU per request, so one process offers a few thousand a
second. Runs as its own process (``python -m bench.openloop``) so that its CPU is not
the test's GIL; ``--concurrency`` gives a closed loop, for measuring capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stack.supervisor import raise_session_priority


@dataclass
class Tally:
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    # From the due time (what a client on schedule sees) and from the send (what the stack
    # took: the generator's own lag when the machine is busy is not the stack's latency).
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"ok": [], "shed": [], "other": []})
    service: dict[str, list[float]] = field(default_factory=lambda: {"ok": [], "shed": [], "other": []})
    wrong: int = 0  # 200s whose body is not the right answer
    unsent: int = 0  # never sent: no connection of the generator's own came free in time
    shed_without_retry_after: int = 0
    per_second: Counter = field(default_factory=Counter)  # second -> answered 200s

    def summary(self, seconds: float, offered: int) -> dict:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 4)

        ok, shed = self.latencies["ok"], self.latencies["shed"]
        ok_service, shed_service = self.service["ok"], self.service["shed"]
        return {
            "seconds": round(seconds, 2), "offered": offered, "offered_rate": round(offered / seconds, 1),
            "unsent": self.unsent, "sent_rate": round((offered - self.unsent) / seconds, 1),
            "served_rate": round(len(ok) / seconds, 1), "shed_rate": round(len(shed) / seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors), "wrong_answers": self.wrong,
            "shed_without_retry_after": self.shed_without_retry_after,
            "served_p50": pct(ok, 0.5), "served_p99": pct(ok, 0.99), "served_max": pct(ok, 1.0),
            "shed_p50": pct(shed, 0.5), "shed_p99": pct(shed, 0.99),
            "served_service_p50": pct(ok_service, 0.5), "served_service_p99": pct(ok_service, 0.99),
            "shed_service_p50": pct(shed_service, 0.5), "shed_service_p99": pct(shed_service, 0.99),
            "served_per_second": [self.per_second.get(s, 0) for s in range(int(seconds) + 1)],
        }


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request out, its response parsed as bytes come in."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            parsed = parse_response(self.buffer)
        except ValueError as error:
            waiter.set_exception(error)
            return
        if parsed is not None:
            del self.buffer[:parsed[3]]
            waiter.set_result(parsed[:3])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or asyncio.IncompleteReadError(bytes(self.buffer), None))


def parse_response(buffer: bytearray) -> tuple[int, dict[str, str], bytes, int] | None:
    """(status, lower-cased headers, body, bytes used) once a whole response is in ``buffer``."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    size = end + 4 + int(headers.get("content-length", "0"))
    if len(buffer) < size:
        return None
    return status, headers, bytes(buffer[end + 4:size]), size


class Client:
    """Raw HTTP/1.1 on asyncio protocols: no task, lock or timer per request beyond one call_at,
    so that the generator's own cost stays far below the stack's (it shares the CPUs)."""

    def __init__(self, url: str, path: str, body: bytes, expect: str, max_connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.request = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.expect = expect.encode()
        self.idle: list[_Connection] = []
        self.opened = 0
        self.max_connections = max_connections
        self.waiting: deque[asyncio.Future] = deque()  # requests waiting for a connection
        self.tally = Tally()
        self.start = 0.0

    async def connection(self, timeout: float) -> _Connection | None:
        """A keep-alive connection, or None when none came free within the timeout.

        None means the generator's own pool was exhausted: the request was never sent, which
        is the client's limit, not an answer the stack failed to give (``Tally.unsent``).
        """
        loop = asyncio.get_running_loop()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.opened -= 1
        if self.opened >= self.max_connections:
            freed = loop.create_future()
            self.waiting.append(freed)
            expiry = loop.call_later(timeout, lambda: freed.done() or freed.set_result(None))
            conn = await freed
            expiry.cancel()
            return conn
        self.opened += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), timeout)
        except BaseException:
            self.release(None)
            raise
        return conn

    def release(self, conn: _Connection | None) -> None:
        """Hand ``conn`` (None: a connection that is gone) to a waiting request, or keep it."""
        if conn is None or conn.closed:
            self.opened -= 1
            conn = None
        while self.waiting:
            freed = self.waiting.popleft()
            if freed.done():  # it gave up waiting
                continue
            if conn is None:  # room for a new connection: let the waiter open one
                self.opened += 1
                asyncio.get_running_loop().create_task(self._open_for(freed))
            else:
                freed.set_result(conn)
            return
        if conn is not None:
            self.idle.append(conn)

    async def _open_for(self, freed: asyncio.Future) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except OSError:
            self.opened -= 1
            if not freed.done():
                freed.set_result(None)
            return
        if freed.done():
            self.release(conn)
        else:
            freed.set_result(conn)

    async def one(self, due: float, timeout: float) -> None:
        try:
            conn = await self.connection(timeout)
        except (OSError, TimeoutError) as error:  # the stack refused or ignored a connect
            self.tally.errors[type(error).__name__] += 1
            return
        if conn is None:
            self.tally.unsent += 1
            return
        loop = asyncio.get_running_loop()
        waiter = conn.waiter = loop.create_future()
        expiry = loop.call_later(timeout, lambda: waiter.done() or waiter.set_exception(TimeoutError()))
        sent = time.monotonic()
        conn.transport.write(self.request)
        try:
            status, headers, body = await waiter
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            self.tally.errors[type(error).__name__] += 1
            conn.transport.close()
            self.release(None)
            return
        finally:
            expiry.cancel()
            conn.waiter = None
        if headers.get("connection", "").lower() == "close":
            conn.transport.close()
            self.release(None)
        else:
            self.release(conn)
        done = time.monotonic()
        self.tally.statuses[status] += 1
        kind = "ok" if status == 200 else "shed" if status in (429, 503) else "other"
        self.tally.latencies[kind].append(done - due)
        self.tally.service[kind].append(done - sent)
        if status == 200:
            self.tally.per_second[int(done - self.start)] += 1
            if self.expect not in body:
                self.tally.wrong += 1
        elif kind == "shed" and "retry-after" not in headers:
            self.tally.shed_without_retry_after += 1


async def open_loop(client: Client, rate: float, seconds: float, timeout: float) -> int:
    client.start = start = time.monotonic()
    tasks, i = set(), 0
    while (due := start + i / rate) < start + seconds:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(client.one(due, timeout))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5)
    return i


async def closed_loop(client: Client, concurrency: int, seconds: float, timeout: float) -> int:
    client.start = start = time.monotonic()
    sent = 0

    async def user() -> None:
        nonlocal sent
        while time.monotonic() < start + seconds:
            sent += 1
            await client.one(time.monotonic(), timeout)

    await asyncio.gather(*(user() for _ in range(concurrency)))
    return sent


def run(main: Coroutine[None, None, int]) -> int:
    """uvloop when installed (a dev dependency): it halves the generator's CPU per request,
    which it takes from the stack it measures, since they share the cores."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", default="/v1/models/digits:predict")
    parser.add_argument("--body", required=True, help="file with the request body")
    parser.add_argument("--expect", default="predictions", help="text every 200 body must contain")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, help="requests per second (open loop)")
    parser.add_argument("--concurrency", type=int, help="clients (closed loop)")
    parser.add_argument("--max-connections", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--priority", type=int, default=10,
                        help="lower the niceness by this much when allowed (root)")
    args = parser.parse_args(argv)
    # Its garbage collector measured itself: with thousands of requests in flight a full
    # collection stalled the loop for long enough that responses waited unread in the socket
    # buffers for seconds, counted as the stack's latency (service p50 3.7 s against 0.4 s in
    # nginx's own log). A run is short; its cyclic garbage can wait for the exit.
    gc.disable()
    # Real clients bring their own CPUs; here the generator shares them with a saturated stack
    # and, starved, would measure itself (nice -10 alone: waiting for a CPU 84 % of the time).
    raise_session_priority(args.priority)
    with open(args.body, "rb") as handle:
        body = handle.read()
    client = Client(args.url, args.path, body, args.expect, args.max_connections)
    if args.rate:
        offered = run(open_loop(client, args.rate, args.seconds, args.timeout))
    else:
        offered = run(closed_loop(client, args.concurrency or 16, args.seconds, args.timeout))
    json.dump(client.tally.summary(args.seconds, offered), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
