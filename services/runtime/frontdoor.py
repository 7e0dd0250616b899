"""Admission at the front door: a request that cannot be served within the budget is refused
as it arrives, in the worker's event loop, before it waits for a thread.

A gthread worker queues fully read requests until one of its threads is free. Under overload
that queue is where the time goes: on a machine half as fast as usual, twice the capacity made
shed requests wait 1.2 s (p50) to 3.9 s (p99) for the thread that would then refuse them. The
worker already reads every request into memory before dispatching it (``buffering``), so it
can decide here, in microseconds, from how many requests it already holds against a limit
that adapts to how fast they are being answered (:class:`Admission`). A refused request gets
its 503 from the worker's event loop; no thread is spent on it.

What is admissible is the service's call (``Admission.sheddable``): health, readiness and
metrics never are. The expected wait is an estimate; the service keeps its own later checks
(a request that still waited past the budget for a thread is refused when a thread takes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from services.common import jsoncodec, naturals, requestid, tracing


@dataclass(frozen=True, slots=True)
class Head:
    """What the front door reads of a buffered request (the rest is Gunicorn's to parse)."""

    method: str
    path: str
    request_id: str  # the client's when safe, else a new one (as the service would choose)
    trace_id: str  # the caller's trace, nginx's, or a new one (services/common/tracing.py)
    keep_alive: bool
    size: int  # bytes of the head and its body


def parse_head(buffer: bytes | bytearray) -> Head | None:
    """The head of the one whole request in ``buffer``, or None when the front door should
    not judge it: anything unusual (chunked, a body still to come, pipelined requests,
    malformed) goes the normal way, where Gunicorn answers it properly."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if version not in ("HTTP/1.1", "HTTP/1.0") or not target.startswith("/"):
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        fields[name.strip().lower()] = value.strip()
    if "transfer-encoding" in fields or "expect" in fields:
        return None
    length = naturals.parse(fields.get("content-length", "0"))
    if length is None:
        return None
    size = end + 4 + length
    if size != len(buffer):
        return None  # body incomplete, or more than one request: the normal path
    connection = fields.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    return Head(
        method=method,
        path=unquote(target.partition("?")[0]),
        request_id=requestid.accept_or_generate(fields.get("x-request-id")),
        trace_id=tracing.trace_id_of(fields.get("traceparent"), fields.get("x-trace-id")),
        keep_alive=keep_alive,
        size=size,
    )


@dataclass(frozen=True, slots=True)
class Refusal:
    head: Head
    inside: int  # requests the worker held (queued and at work) when this one arrived
    limit: float
    response: bytes  # the whole HTTP response, ready to send


WINDOW = 64  # served requests per adjustment of the limit


class Admission:
    """One service's front-door rule, installed by its app factory (:func:`install`).

    A worker admits a request while it holds fewer than ``limit`` requests (queued for a
    thread and at work); past it, the request is refused as it arrives. The limit adapts, as
    TCP's congestion window does: every ``WINDOW`` served requests, if the limit was reached
    and the slowest of them (the 95th percentile) took longer than the budget while the
    fastest took less than half of that -- the extra time was queueing, not the model -- it
    shrinks by a tenth; if it was reached and even the slow ones stayed well within the budget,
    it grows. So the worker keeps as many requests as it can answer in time, whatever the
    machine's speed, the model's cost or what else shares the CPU; when every request is slow
    by itself, refusing would not make it faster, and the limit stays.
    """

    def __init__(
        self, budget: float, sheddable: Callable[[str, str], bool], *, what: str, threads: int,
        on_refused: Callable[[Refusal], None] = lambda refusal: None,
    ) -> None:
        self.budget = budget
        self.sheddable = sheddable  # (method, path) -> may this request be refused for load?
        self.on_refused = on_refused  # metrics and the access log line
        self._ceiling = 4.0 * threads  # room for a queue while answers are fast
        # It starts there, and comes down on evidence: starting at the thread count refused a
        # fresh worker's first burst, and even a sequential client whose previous request's
        # thread had answered but not yet finished.
        self.limit = self._ceiling
        self._what = what  # "gateway", "inference": named in the message
        self._window: list[float] = []
        self._reached = False  # the limit refused something since the last adjustment

    def observe(self, seconds: float) -> None:
        """A served request took ``seconds`` in the worker (called from its thread)."""
        window = self._window
        window.append(seconds)
        if len(window) < WINDOW:
            return
        self._window = []  # a sample appended to the old list meanwhile is simply lost
        window.sort()
        slow, fast = window[int(0.95 * len(window))], window[0]
        reached, self._reached = self._reached, False
        if not reached:
            return  # below the limit: its latency says nothing about the limit
        if slow > self.budget and slow > 2 * fast:
            self.limit = max(1.0, self.limit * 0.9)
        elif slow < 0.6 * self.budget:
            self.limit = min(self._ceiling, self.limit * 1.05 + 1)

    def full(self, inside: int) -> bool:
        """Whether a worker holding ``inside`` requests is at its limit: the only case in which
        a request's head is worth reading here (an idle worker takes anything)."""
        return inside > 0 and inside >= self.limit

    def judge(self, head: Head, *, inside: int) -> Refusal | None:
        """None to admit; else the refusal to send. ``inside``: requests the worker holds."""
        if not self.full(inside):
            return None
        self._reached = True
        message = (
            f"overloaded: the {self._what} holds {inside} requests, its limit for answers "
            f"within the {self.budget * 1000:.0f} ms budget; retry later"
        )
        return Refusal(head, inside, self.limit, render_503(message, head))


def render_503(message: str, head: Head) -> bytes:
    body = jsoncodec.dumps({"error": message})
    connection = "keep-alive" if head.keep_alive else "close"
    return (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\n{requestid.HEADER}: {head.request_id}\r\n"
        f"Connection: {connection}\r\n\r\n"
    ).encode("latin-1") + body


_installed: Admission | None = None


def install(admission: Admission | None) -> None:
    """Called by an app factory in the worker process; the worker consults it per request."""
    global _installed
    _installed = admission


def installed() -> Admission | None:
    return _installed
