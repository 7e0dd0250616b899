"""The gateway as a WSGI application: plumbing for every request, forwarding for model calls.

Every request gets its id, the API-key check and the rate limit, one access-log line and its
metrics here. Model calls (the inference service's own paths) are forwarded here too, without
Flask: Flask's request machinery measured about 200 µs of CPU per request, more than the
forwarding itself (docs/architecture.md, "Gateway"). What the gateway answers itself -- health,
readiness, metrics, model listings -- goes on to the Flask app and its thin views.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from services.common import deadline, frontdoor, lifecycle, naturals, requestid
from services.common.openapi import ASSETS_PREFIX
from services.common.errors import (
    ClientError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    TooManyRequests,
    Unauthorized,
    report,
    report_unexpected,
)
from services.gateway import access_log, paths
from services.gateway.auth import ANONYMOUS, Authenticator
from services.gateway.config import GatewaySettings
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Deadline, Forwarder, forwarded_headers
from services.gateway.ratelimit import RateLimiter
from services.gateway.routing import Router
from services.protocol.facts import HEALTH_PATHS, OPEN_PATHS

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
REQUEST_ID = "modelserver.request_id"  # environ key: the request's id, for the Flask views
DEADLINE = "modelserver.deadline"  # environ key: the request's Deadline

_REASONS = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(ASSETS_PREFIX + "/")


class _Record:
    """What the access log and the metrics say about one request."""

    __slots__ = ("status", "model", "version", "backend", "retried", "caller")

    def __init__(self) -> None:
        self.status = 500
        self.model = "none"
        self.version = ""
        self.backend = "none"
        self.retried = ""
        self.caller = ""


class Gateway:
    def __init__(
        self, local_app: WSGIApp, router: Router, auth: Authenticator, limiter: RateLimiter | None,
        forwarder: Forwarder, settings: GatewaySettings, m: GatewayMetrics,
    ) -> None:
        self._local_app = local_app
        self._router = router
        self._auth = auth
        self._limiter = limiter
        self._forwarder = forwarder
        self._settings = settings
        self._m = m
        self.admission = frontdoor.Admission(
            settings.queue_budget_ms / 1000, lambda method, path: not _is_open(path),
            what="gateway", threads=settings.threads, on_refused=self._refused_at_door,
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = lifecycle.arrived()  # when its bytes arrived, before any wait for a thread
        request_id = requestid.accept_or_generate(environ.get("HTTP_X_REQUEST_ID"))
        path = environ.get("PATH_INFO", "")
        health = path in HEALTH_PATHS
        record = _Record()
        try:
            if health:
                return self._local(environ, start_response, request_id, record)
            budget = deadline.timeout_from(
                environ.get("HTTP_X_REQUEST_TIMEOUT"),
                self._settings.request_timeout, self._settings.max_request_timeout,
            )
            environ[DEADLINE] = Deadline(started + budget, budget)
            self._shed_if_queued_too_long(started)
            record.caller = self._admit(environ, open_path=_is_open(path))
            call = paths.match(path)
            if call is None:
                return self._local(environ, start_response, request_id, record)
            return self._forward(call, environ, start_response, request_id, record)
        except ServingError as error:
            return self._render(report(error), environ, start_response, request_id, record)
        except Exception:  # noqa: BLE001  (a bug must still answer JSON)
            return self._render(report_unexpected(), environ, start_response, request_id, record)
        finally:
            if record.backend != "none" and record.status != 503:
                self.admission.observe(time.monotonic() - started)  # served, queue included
            if not health:
                self._m.requests.labels(record.model, record.backend, str(record.status)).inc()
            access_log.write(
                request_id=request_id, method=environ.get("REQUEST_METHOD", ""), path=path,
                model=record.model, version=record.version, status=record.status,
                duration=time.monotonic() - started, backend=record.backend,
                retried=record.retried, caller=record.caller, health=health,
            )

    # -- admission -----------------------------------------------------------------------------

    def _refused_at_door(self, refusal: frontdoor.Refusal) -> None:
        """Counted and logged like any answer (the worker wrote it from its event loop)."""
        head = refusal.head
        call = paths.match(head.path)
        model = call.name if call is not None and call.name in self._router.routes else "none"
        self._m.rejections.labels("overloaded").inc()
        self._m.requests.labels(model, "none", "503").inc()
        access_log.write(
            request_id=head.request_id, method=head.method, path=head.path, model=model,
            version="", status=503, duration=0.0, backend="none", retried="", caller="",
        )

    def _shed_if_queued_too_long(self, arrived: float) -> None:
        """Overload shows first as a wait for a worker thread, where no queue of ours sees it:
        2x the stack's capacity once queued 10 s deep in the gateway with nothing refused.
        Refusing what waited past the budget keeps served latency bounded and sheds cheaply."""
        waited = time.monotonic() - arrived
        if waited > self._settings.queue_budget_ms / 1000:
            self._m.rejections.labels("overloaded").inc()
            raise Overloaded(
                f"overloaded: waited {waited * 1000:.0f} ms for a gateway thread, over the "
                f"{self._settings.queue_budget_ms:.0f} ms budget; retry later",
            )

    def _admit(self, environ: dict[str, Any], *, open_path: bool = False) -> str:
        """The caller's identity, once it has shown a valid key (not on ``open_path``: the API
        reference needs none, SECURITY.md says why) and is within its rate."""
        try:
            caller = ANONYMOUS if open_path else self._auth.check(
                environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_API_KEY"))
            if self._limiter is not None:
                self._limiter.check(caller)
        except Unauthorized:
            self._m.rejections.labels("unauthorized").inc()
            raise
        except TooManyRequests:
            self._m.rejections.labels("rate_limited").inc()
            raise
        return caller

    # -- model calls ---------------------------------------------------------------------------

    def _forward(
        self, call: paths.ModelCall, environ: dict[str, Any], start_response: Callable[..., Any],
        request_id: str, record: _Record,
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method != call.method:
            raise MethodNotAllowed("method not allowed on this path", allowed=(call.method,))
        route = self._router.routes.get(call.name)
        if route is None:
            raise NotFound(f"model '{call.name}' not found")
        record.model = call.name
        version = call.version
        if version is not None:
            if naturals.parse(version) is None:
                raise NotFound(f"model '{call.name}' version '{version[:40]}' not found: versions are integers")
        elif call.is_inference and route.canary is not None:
            version = route.canary.choose()
        record.version = version or ""
        target = call.target(version)
        query = environ.get("QUERY_STRING")
        if query:
            target = f"{target}?{query}"
        body = self._body(environ) if method == "POST" else None
        self._m.inflight.inc()
        try:
            forwarded = self._forwarder.forward(
                route, method, target, body, forwarded_headers(environ, request_id), environ[DEADLINE]
            )
        except ServingError as error:
            record.backend = getattr(error, "backend", "none")
            raise
        finally:
            self._m.inflight.dec()
        reply = forwarded.reply
        record.backend, record.retried, record.status = forwarded.backend.label, forwarded.retried, reply.status
        headers = reply.headers
        headers.append(("Content-Length", str(len(reply.body))))
        headers.append((requestid.HEADER, request_id))
        start_response(_REASONS.get(reply.status) or f"{reply.status} Unknown", headers)
        return [reply.body]

    def _body(self, environ: dict[str, Any]) -> bytes:
        limit = self._settings.max_body_bytes
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            size = naturals.parse(length)
            if size is None:
                raise ClientError("Content-Length is not a number")
            if size > limit:
                raise PayloadTooLarge("request body too large")
            return stream.read(size)
        if environ.get("wsgi.input_terminated"):  # chunked: read to the end, at most the limit
            data = stream.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge("request body too large")
            return data
        return b""

    # -- everything else -----------------------------------------------------------------------

    def _local(
        self, environ: dict[str, Any], start_response: Callable[..., Any], request_id: str,
        record: _Record,
    ) -> Iterable[bytes]:
        environ[REQUEST_ID] = request_id

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record.status = int(status[:3])
            headers.append((requestid.HEADER, request_id))
            return start_response(status, headers, exc_info)

        return self._local_app(environ, start)

    def _render(
        self, response: Any, environ: dict[str, Any], start_response: Callable[..., Any],
        request_id: str, record: _Record,
    ) -> Iterable[bytes]:
        record.status = response.status_code
        response.headers[requestid.HEADER] = request_id
        return response(environ, start_response)
