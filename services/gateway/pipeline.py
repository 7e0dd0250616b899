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

from services.common import deadline, naturals, requestid, tracing
from services.common.errors import (
    ClientError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    report,
    report_unexpected,
)
from services.gateway import access_log, doorkeeper, fanout, paths
from services.gateway.auth import Authenticator
from services.gateway.canary import pinned_or_chosen
from services.gateway.config import GatewaySettings
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Deadline, Forwarder, forwarded_headers
from services.gateway.ratelimit import RateLimiter
from services.gateway.routing import Router
from services.protocol.facts import HEALTH_PATHS, OPEN_PATHS, STATUS_PATHS
from services.protocol.openapi import ASSETS_PREFIX
from services.runtime import frontdoor, lifecycle

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
REQUEST_ID = "modelserver.request_id"  # environ key: the request's id, for the Flask views
DEADLINE = "modelserver.deadline"  # environ key: the request's Deadline

_REASONS = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(ASSETS_PREFIX + "/")


class Gateway:
    def __init__(
        self, local_app: WSGIApp, router: Router, auth: Authenticator, limiter: RateLimiter | None,
        forwarder: Forwarder, settings: GatewaySettings, m: GatewayMetrics,
        admin: Authenticator | None = None,
    ) -> None:
        self._local_app = local_app
        self._router = router
        self._auth = auth
        self._admin = admin or Authenticator(())
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
        # The status page polls like a scraper: answered as the health paths are, uncounted.
        health = path in HEALTH_PATHS or path in STATUS_PATHS
        record = access_log.Record()
        span = None if health else tracing.tracer().start(
            "gateway request", tracing.incoming(environ), server=True, at=started,
            trace_id=tracing.edge_trace_id(environ.get("HTTP_X_TRACE_ID")),
            attributes={"http.request.method": environ.get("REQUEST_METHOD", ""), "url.path": path},
        )
        try:
            if health:
                return self._local(environ, start_response, request_id, record)
            budget = deadline.timeout_from(
                environ.get("HTTP_X_REQUEST_TIMEOUT"),
                self._settings.request_timeout, self._settings.max_request_timeout,
            )
            environ[DEADLINE] = Deadline(started + budget, budget)
            self._shed_if_queued_too_long(started)
            repository = paths.match_repository(path)
            record.caller = self._admit(environ, open_path=_is_open(path), admin=repository is not None)
            assert span is not None
            if repository is not None:
                return self._repository(repository, environ, start_response, request_id, record, span)
            call = paths.match(path)
            if call is None:
                return self._local(environ, start_response, request_id, record)
            return self._forward(call, environ, start_response, request_id, record, span)
        except ServingError as error:
            return self._render(report(error), environ, start_response, request_id, record)
        except Exception:  # noqa: BLE001  (a bug must still answer JSON)
            return self._render(report_unexpected(), environ, start_response, request_id, record)
        finally:
            if record.backend != "none" and record.status != 503:
                self.admission.observe(time.monotonic() - started)  # served, queue included
            if span is not None:
                self._m.requests.labels(record.model, record.backend, "http", str(record.status)).inc()
                span.set("http.response.status_code", record.status)
                span.set("modelserver.model", record.model)
                span.end(error=record.status >= 500)
            access_log.write(
                request_id=request_id, trace_id=span.context.trace_id if span is not None else "",
                method=environ.get("REQUEST_METHOD", ""), path=path,
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
        self._m.requests.labels(model, "none", "http", "503").inc()
        access_log.write(
            request_id=head.request_id, trace_id=head.trace_id, method=head.method, path=head.path, model=model,
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

    def _admit(self, environ: dict[str, Any], *, open_path: bool = False, admin: bool = False) -> str:
        """The caller's identity, once it has shown a valid key (not on ``open_path``: the API
        reference needs none, SECURITY.md says why) and is within its rate. ``admin`` calls take
        an admin key, never a client key, and are refused while no admin key is configured."""
        if admin and not self._admin.enabled:
            self._m.rejections.labels("forbidden").inc()
            raise Forbidden("model control through the gateway is off: it needs GATEWAY_ADMIN_KEYS")
        return doorkeeper.admit(
            self._admin if admin else self._auth, self._limiter, self._m,
            environ.get("HTTP_AUTHORIZATION"), environ.get("HTTP_X_API_KEY"), open_path=open_path,
        )

    # -- model calls ---------------------------------------------------------------------------

    def _forward(
        self, call: paths.ModelCall, environ: dict[str, Any], start_response: Callable[..., Any],
        request_id: str, record: access_log.Record, span: tracing.Span,
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method != call.method:
            raise MethodNotAllowed("method not allowed on this path", allowed=(call.method,))
        route = self._router.routes.get(call.name)
        if route is None:
            raise NotFound(f"model '{call.name}' not found")
        record.model = call.name
        version, label = pinned_or_chosen(
            call.name, route.canary, call.version, call.label, inference=call.is_inference,
            labels=call.protocol == "v1",
        )
        record.version = version or label or ""
        target = call.target(version, label)
        query = environ.get("QUERY_STRING")
        if query:
            target = f"{target}?{query}"
        body = self._body(environ) if method == "POST" else None
        headers = forwarded_headers(environ, request_id)
        if call.is_statistics:  # the model's, over all its replicas
            answers = fanout.each_replica(
                self._forwarder, route, method, target, body, headers, environ[DEADLINE], span.context,
            )
            record.backend = "all"
            return self._reply(fanout.summed_statistics(route, answers), start_response, request_id, record)
        self._m.inflight.inc()
        try:
            forwarded = self._forwarder.forward(
                route, method, target, body, headers, environ[DEADLINE], span.context,
            )
        except ServingError as error:
            record.backend = error.upstream or "none"
            raise
        finally:
            self._m.inflight.dec()
        record.backend, record.retried = forwarded.backend.label, forwarded.retried
        return self._reply(forwarded.reply, start_response, request_id, record)

    def _repository(
        self, call: paths.RepositoryCall, environ: dict[str, Any], start_response: Callable[..., Any],
        request_id: str, record: access_log.Record, span: tracing.Span,
    ) -> Iterable[bytes]:
        """Triton's load/unload, on every replica of the model (each loads from its own disk)."""
        if environ.get("REQUEST_METHOD", "") != "POST":
            raise MethodNotAllowed("method not allowed on this path", allowed=("POST",))
        route = self._router.routes.get(call.name)
        if route is None:
            raise NotFound(f"model '{call.name}' not found")
        record.model, record.backend = call.name, "all"
        answers = fanout.each_replica(
            self._forwarder, route, "POST", call.target, self._body(environ),
            forwarded_headers(environ, request_id), environ[DEADLINE], span.context,
        )
        return self._reply(fanout.all_must_agree(route, answers), start_response, request_id, record)

    def _reply(
        self, reply: Any, start_response: Callable[..., Any], request_id: str, record: access_log.Record
    ) -> Iterable[bytes]:
        record.status = reply.status
        headers = list(reply.headers)
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
        record: access_log.Record,
    ) -> Iterable[bytes]:
        environ[REQUEST_ID] = request_id

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            record.status = int(status[:3])
            headers.append((requestid.HEADER, request_id))
            return start_response(status, headers, exc_info)

        return self._local_app(environ, start)

    def _render(
        self, response: Any, environ: dict[str, Any], start_response: Callable[..., Any],
        request_id: str, record: access_log.Record,
    ) -> Iterable[bytes]:
        record.status = response.status_code
        response.headers[requestid.HEADER] = request_id
        return response(environ, start_response)
