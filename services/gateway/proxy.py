"""Forwarding one request to a replica within its deadline, retrying once where that is safe.

Retried on another replica (once): a connection that could not be opened, one that broke
before an answer (predictions are idempotent, so repeating one is harmless), and a 503 (the
replica shed load or is shutting down). Every other answer, error or not, is passed through
as it is. A replica that refuses a connection leaves the rotation until a probe brings it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from services.common import deadline, requestid, tracing
from services.common.errors import BadGateway, GatewayTimeout, Unavailable
from services.gateway.httpclient import ConnectError, ConnectionLost, ReadTimeout, TransportError
from services.gateway.metrics import GatewayMetrics
from services.gateway.routing import Route
from services.gateway.upstream import Backend, Reply

log = logging.getLogger(__name__)

# Request headers a replica needs to read the body as the client meant it. An allowlist:
# credentials (Authorization, X-API-Key) and hop-by-hop headers never travel on; the trace
# context goes on as each attempt's own span (``Forwarder``).
_FORWARDED = (
    ("CONTENT_TYPE", "Content-Type"),
    ("HTTP_CONTENT_ENCODING", "Content-Encoding"),
    ("HTTP_ACCEPT", "Accept"),
    ("HTTP_ACCEPT_ENCODING", "Accept-Encoding"),
    ("HTTP_INFERENCE_HEADER_CONTENT_LENGTH", "Inference-Header-Content-Length"),
)


def forwarded_headers(environ: Mapping[str, str], request_id: str) -> dict[str, str]:
    headers = {name: environ[key] for key, name in _FORWARDED if environ.get(key)}
    headers[requestid.HEADER] = request_id
    return headers


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() by which the answer is due
    budget: float  # seconds the client was granted in all

    def remaining(self) -> float:
        return self.at - time.monotonic()


@dataclass(frozen=True)
class Forwarded:
    reply: Reply
    backend: Backend
    retried: str  # why the request was sent a second time; "" if it was not


class Forwarder:
    def __init__(self, connect_timeout: float, m: GatewayMetrics) -> None:
        self._connect_timeout = connect_timeout
        self._m = m

    def forward(
        self, route: Route, method: str, target: str, body: bytes | None,
        headers: dict[str, str], due: Deadline, trace: tracing.TraceContext | None = None,
    ) -> Forwarded:
        """``trace``: the gateway's span for this request; each attempt is a span under it."""
        backend = route.balancer.choose()
        if backend is None:
            raise Unavailable(f"model '{route.name}' has no replica to send to", retry_after=1)
        first = self.attempt(route, backend, method, target, body, headers, due, trace, "")
        if isinstance(first, Reply) and first.status != 503:
            return Forwarded(first, backend, "")
        reason = "503" if isinstance(first, Reply) else first.reason
        other = route.balancer.choose(avoid=backend)
        last = first
        if other is not None and due.remaining() > 0:
            self._m.retries.labels(route.name, reason).inc()
            last = self.attempt(route, other, method, target, body, headers, due, trace, reason)
            if isinstance(last, Reply):
                return Forwarded(last, other, reason)
        if isinstance(first, Reply):  # the retry failed too: the first replica's 503 stands
            return Forwarded(first, backend, "")
        if isinstance(last, ConnectionLost):
            raise BadGateway(f"a replica of model '{route.name}' closed the connection without answering",
                             upstream=last.backend)
        raise Unavailable(f"no replica of model '{route.name}' could be reached", retry_after=1,
                          upstream=last.backend)

    def attempt(
        self, route: Route, backend: Backend, method: str, target: str, body: bytes | None,
        headers: dict[str, str], due: Deadline, trace: tracing.TraceContext | None = None, retry: str = "",
    ) -> Reply | TransportError:
        """The replica's answer, or why there is none (a refused or lost connection); a passed
        deadline raises :class:`GatewayTimeout`."""
        remaining = due.remaining()
        if remaining <= 0:
            raise self._late(route, due, backend)
        headers[deadline.HEADER] = f"{remaining:.3f}"  # the replica stops working when we stop waiting
        span = tracing.tracer().start("forward", trace, attributes={
            "modelserver.backend": backend.label, "modelserver.retry": retry or "none",
        })
        headers.update(span.context.headers())
        outcome, failed = "timeout", True
        started = time.perf_counter()
        try:
            reply = backend.send(
                method, target, body, headers, connect_timeout=self._connect_timeout, deadline=due.at
            )
            outcome, failed = str(reply.status), reply.status >= 500
            return reply
        except ReadTimeout:
            raise self._late(route, due, backend) from None
        except TransportError as error:
            if isinstance(error, ConnectError):
                if backend.serving:
                    log.warning("backend unreachable, out of rotation until a probe finds it ready",
                                extra={"fields": {"backend": backend.label}})
                backend.serving = frozenset()
            outcome = error.reason
            return error
        finally:
            self._m.upstream_latency.labels(route.name, backend.label).observe(time.perf_counter() - started)
            span.set("modelserver.outcome", outcome)
            span.end(error=failed)

    @staticmethod
    def _late(route: Route, due: Deadline, backend: Backend) -> GatewayTimeout:
        return GatewayTimeout(f"model '{route.name}' did not answer within the deadline of {due.budget:g} s",
                              upstream=backend.label)
