"""An open-loop HTTP load generator: requests leave on a fixed schedule, answered or not.

A closed loop (N clients, each waiting for its answer) slows down with the server and never
offers more than it can take, so it cannot test overload. Here request i is due at
``start + i / rate``; its latency counts from that moment, so time spent waiting for a free
connection counts too (no coordinated omission). Raw HTTP/1.1 over asyncio keep-alive
connections: about 20 µs of client CPU per request, so one process offers a few thousand a
second. Runs as its own process (``python -m tests.support.openloop``) so that its CPU is not
the test's GIL; ``--concurrency`` gives a closed loop, for measuring capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


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


class Client:
    def __init__(self, url: str, path: str, body: bytes, expect: str, max_connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.request = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.expect = expect.encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.max_connections = max_connections
        self.freed = asyncio.Condition()
        self.tally = Tally()
        self.start = 0.0

    async def connection(self, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A keep-alive connection, or None when none came free within the timeout.

        None means the generator's own pool was exhausted: the request was never sent, which
        is the client's limit, not an answer the stack failed to give (``Tally.unsent``).
        """
        try:
            async with asyncio.timeout(timeout):
                async with self.freed:
                    while not self.idle and self.opened >= self.max_connections:
                        await self.freed.wait()
                    if self.idle:
                        return self.idle.pop()
                    self.opened += 1
        except TimeoutError:
            return None
        try:
            return await asyncio.wait_for(asyncio.open_connection(self.host, self.port, limit=1 << 20), timeout)
        except BaseException:
            await self.release(None)
            raise

    async def release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        async with self.freed:
            if conn is None:
                self.opened -= 1
            else:
                self.idle.append(conn)
            self.freed.notify()

    async def one(self, due: float, timeout: float) -> None:
        try:
            conn = await self.connection(timeout)
        except (OSError, TimeoutError) as error:  # the stack refused or ignored a connect
            self.tally.errors[type(error).__name__] += 1
            return
        if conn is None:
            self.tally.unsent += 1
            return
        try:
            reader, writer = conn
            sent = time.monotonic()
            writer.write(self.request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
            if headers.get("connection", "").lower() == "close":
                writer.close()
                conn = None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            self.tally.errors[type(error).__name__] += 1
            if conn is not None:
                conn[1].close()
                await self.release(None)
            return
        await self.release(conn)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.openloop", description=__doc__)
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
    # Real clients bring their own CPUs. Here the generator shares 2 cores with a saturated
    # stack; starved, it falls seconds behind, its own pool runs dry and it measures itself.
    try:
        os.nice(-args.priority)
    except PermissionError:
        pass
    with open(args.body, "rb") as handle:
        body = handle.read()
    client = Client(args.url, args.path, body, args.expect, args.max_connections)
    if args.rate:
        offered = asyncio.run(open_loop(client, args.rate, args.seconds, args.timeout))
    else:
        offered = asyncio.run(closed_loop(client, args.concurrency or 16, args.seconds, args.timeout))
    json.dump(client.tally.summary(args.seconds, offered), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
