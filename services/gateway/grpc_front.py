"""The gateway's gRPC front door: the same checks and routing as HTTP, messages forwarded as bytes.

Each Gunicorn worker runs one ``grpc.server`` (started after the fork, in the app factory) on
``GATEWAY_GRPC_BIND``; the workers share the port with ``SO_REUSEPORT``. A call gets what an HTTP
request gets in ``pipeline.Gateway``: its request id (``x-request-id``), the API key from metadata
(``authorization: Bearer <key>`` or ``x-api-key``), the rate limit, its model's route, the
canary's version when it pins none (re-encoding only that field, ``grpc_calls``), the client's
deadline (capped like ``X-Request-Timeout``), one retry on another replica for UNAVAILABLE, an
access-log line and the metrics, with ``protocol="grpc"``. A replica's other errors pass
through with their code, message and trailing metadata.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from services import __version__
from services.common import requestid, tracing
from services.common.errors import (
    ClientError,
    GatewayTimeout,
    NotFound,
    ServingError,
    Unavailable,
)
from services.gateway import access_log, doorkeeper, grpc_calls
from services.gateway.auth import Authenticator
from services.gateway.canary import pinned_or_chosen
from services.gateway.config import GatewaySettings
from services.gateway.grpc_calls import Method, WireError
from services.gateway.grpc_upstream import Answer, Channels, Metadata
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Deadline
from services.gateway.ratelimit import RateLimiter
from services.gateway.routing import Route, Router
from services.gateway.upstream import Backend
from services.protocol import v2
from services.runtime import lifecycle

log = logging.getLogger(__name__)

# What travels on to the replica is an allowlist, as for HTTP headers (credentials never do):
# the gateway's request id and its forward span's trace context.
_NOT_RELAYED_BACK = ("x-request-id", "content-type")
_UNREACHABLE = "failed to connect"  # gRPC's message when no connection could be opened
_NO_DEADLINE = 365 * 86400.0  # seconds: a call without a deadline reports about 2**63 ns
# The HTTP status a gRPC code stands for: the metrics' status label (and the alerts on 5xx) and
# the access log read the same for both protocols (services/common/errors.py maps the other way).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}


class _Passed(Exception):
    """A replica's error answer, to be passed to the client as it came."""

    def __init__(self, error: grpc.RpcError, backend: Backend, retried: str) -> None:
        super().__init__(error.details())
        self.code: grpc.StatusCode = error.code()
        self.details: str = error.details() or ""
        self.trailing: Metadata = error.trailing_metadata() or ()
        self.backend = backend
        self.retried = retried


def _relayed(metadata: Metadata) -> list[tuple[str, str | bytes]]:
    return [(k, v) for k, v in metadata if not k.startswith(_NOT_RELAYED_BACK)]


class GrpcFront(grpc.GenericRpcHandler):
    def __init__(
        self, router: Router, auth: Authenticator, limiter: RateLimiter | None, settings: GatewaySettings,
        m: GatewayMetrics, ready: Callable[[], bool],
    ) -> None:
        self._router = router
        self._auth = auth
        self._limiter = limiter
        self._settings = settings
        self._m = m
        self._ready = ready
        self._channels_lock = threading.Lock()

    # -- grpc.GenericRpcHandler ----------------------------------------------------------------

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        path = handler_call_details.method
        if path not in grpc_calls.FORWARDED and path not in grpc_calls.ANSWERED:
            return None  # UNIMPLEMENTED, from gRPC itself
        # No (de)serializers: requests and answers stay bytes.
        return grpc.unary_unary_rpc_method_handler(lambda body, context: self._serve(path, body, context))

    # -- one call ------------------------------------------------------------------------------

    def _serve(self, path: str, body: bytes, context: grpc.ServicerContext) -> bytes:
        started = time.monotonic()
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        request_id = requestid.accept_or_generate(metadata.get("x-request-id"))
        record = access_log.Record()
        health = path in grpc_calls.OPEN
        code, message, trailing, initial = grpc.StatusCode.OK, "", (), ()
        answer = b""
        span = None if health else tracing.tracer().start(
            "gateway request", tracing.parse(metadata.get("traceparent"), metadata.get("tracestate")), server=True,
            at=started, trace_id=tracing.edge_trace_id(metadata.get("x-trace-id")),
            attributes={"rpc.system": "grpc", "rpc.method": path},
        )
        try:
            if path in grpc_calls.ANSWERED:
                record.caller = self._admit(metadata, open_path=health)
                answer = self._answer(path, body)
            else:
                budget = self._budget(context.time_remaining())
                record.caller = self._admit(metadata)
                assert span is not None
                forwarded = self._forward(grpc_calls.FORWARDED[path], body, request_id,
                                          Deadline(started + budget, budget), record, span.context)
                answer, initial, trailing = forwarded.body, _relayed(forwarded.initial), forwarded.trailing
        except ServingError as error:
            code, message, trailing = grpc.StatusCode[error.grpc_code], error.message, error.retry_metadata()
            record.backend = error.upstream or record.backend
            if error.status >= 500 and not isinstance(error, (Unavailable, GatewayTimeout)):
                log.error("gRPC call failed: %s", error.message)
        except _Passed as passed:
            code, message, trailing = passed.code, passed.details, passed.trailing
            record.backend, record.retried = passed.backend.label, passed.retried
        except Exception:  # noqa: BLE001  (a bug must still answer a status, and be logged)
            log.exception("unhandled error in a gRPC call")
            code, message, trailing = grpc.StatusCode.INTERNAL, "internal error", ()
        record.status = _HTTP_STATUS.get(code, 500)
        trace_id = ""
        if span is not None:
            span.set("rpc.grpc.status_code", code.value[0])
            span.set("modelserver.model", record.model)
            span.end(error=record.status >= 500)
            trace_id = span.context.trace_id
        self._account(path, request_id, trace_id, record, code, started, health)
        context.send_initial_metadata([*initial, (requestid.HEADER.lower(), request_id)])
        if code is not grpc.StatusCode.OK:
            context.set_trailing_metadata(_relayed(trailing))
            context.abort(code, message)
        context.set_trailing_metadata(_relayed(trailing))
        return answer

    def _budget(self, remaining: float | None) -> float:
        """The client's deadline, capped as ``X-Request-Timeout`` is; none (gRPC reports an
        infinite one as centuries) gets the default."""
        if remaining is None or remaining > _NO_DEADLINE:
            remaining = self._settings.request_timeout
        return min(remaining, self._settings.max_request_timeout)

    def _account(
        self, path: str, request_id: str, trace_id: str, record: access_log.Record, code: grpc.StatusCode,
        started: float, health: bool,
    ) -> None:
        if not health:
            self._m.requests.labels(record.model, record.backend, "grpc", str(record.status)).inc()
        access_log.write(
            request_id=request_id, trace_id=trace_id, method="POST", path=path, model=record.model,
            version=record.version, status=record.status, duration=time.monotonic() - started,
            backend=record.backend, retried=record.retried, caller=record.caller, health=health,
            protocol="grpc", grpc_status=code.name,
        )

    def _admit(self, metadata: dict[str, str], *, open_path: bool = False) -> str:
        return doorkeeper.admit(self._auth, self._limiter, self._m, metadata.get("authorization"),
                                metadata.get("x-api-key"), open_path=open_path)

    # -- what the gateway answers itself -------------------------------------------------------

    def _answer(self, path: str, body: bytes) -> bytes:
        if path == grpc_calls.SERVER_LIVE:
            return grpc_calls.bool_response(True)
        if path == grpc_calls.SERVER_READY:
            return grpc_calls.bool_response(self._ready())
        if path == grpc_calls.SERVER_METADATA:
            meta = v2.server_metadata(__version__)
            return grpc_calls.server_metadata_response(meta["name"], meta["version"], meta["extensions"])
        try:  # grpc.health.v1.Health/Check
            service = grpc_calls.health_service(body)
        except WireError as error:
            raise ClientError(f"malformed HealthCheckRequest: {error}") from None
        if service and service not in (grpc_calls.PREDICTION, grpc_calls.MODEL_SERVICE, grpc_calls.V2):
            raise NotFound(f"unknown service '{service[:100]}'")
        return grpc_calls.health_response(self._ready())

    # -- model calls ---------------------------------------------------------------------------

    def _forward(
        self, method: Method, body: bytes, request_id: str, due: Deadline, record: access_log.Record,
        trace: tracing.TraceContext,
    ) -> Answer:
        try:
            asked = method.asked(body)
        except WireError as error:
            raise ClientError(f"malformed request message: {error}") from None
        route = self._router.routes.get(asked.model)
        if route is None:
            raise NotFound(f"model '{asked.model[:128]}' not found")
        record.model = route.name
        version, label = pinned_or_chosen(
            route.name, route.canary, asked.version, asked.label, inference=method.inference, labels=method.tfs,
        )
        if (version, label) != (asked.version, asked.label):
            body = method.choose(body, None if version == asked.version else version,
                                 None if label == asked.label else label)
        record.version = version or label or ""
        outgoing: Metadata = ((requestid.HEADER.lower(), request_id),)
        backend = route.balancer.choose(grpc=True)
        if backend is None:
            raise Unavailable(f"model '{route.name}' has no replica serving gRPC", retry_after=1)
        self._m.inflight.inc()
        try:
            return self._attempts(route, backend, method.path, body, outgoing, due, record, trace)
        finally:
            self._m.inflight.dec()

    def _attempts(
        self, route: Route, backend: Backend, path: str, body: bytes, outgoing: Metadata, due: Deadline,
        record: access_log.Record, trace: tracing.TraceContext,
    ) -> Answer:
        """The first replica's answer; after an UNAVAILABLE (refused, reset, shedding, stopping),
        another replica's (or, with one replica, another of its connections)."""
        retried = ""
        while True:
            record.backend = backend.label
            try:
                answer = self._attempt(route, backend, path, body, outgoing, due, trace, retry=retried)
                record.retried = retried
                return answer
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.UNAVAILABLE and (error.details() or "").startswith(_UNREACHABLE):
                    if backend.serving:  # as HTTP's refused connection: out until a probe finds it ready
                        log.warning("backend unreachable over gRPC, out of rotation until a probe finds it ready",
                                    extra={"fields": {"backend": backend.label}})
                    backend.serving = frozenset()
                if retried or error.code() is not grpc.StatusCode.UNAVAILABLE or due.remaining() <= 0:
                    raise _Passed(error, backend, retried) from None
                retried = "unavailable"
                self._m.retries.labels(route.name, retried).inc()
                backend = route.balancer.choose(avoid=backend, grpc=True) or backend

    def _attempt(
        self, route: Route, backend: Backend, path: str, body: bytes, outgoing: Metadata, due: Deadline,
        trace: tracing.TraceContext, *, retry: str = "",
    ) -> Answer:
        """One call to ``backend``. A retry first gives the replica's connection up to the connect
        timeout (as HTTP's retry gets to open one): a replica that just came back, or whose
        worker restarts (its workers alone hold the gRPC port), is not refused for a backoff."""
        remaining = due.remaining()
        if remaining <= 0:
            raise GatewayTimeout(f"model '{route.name}' did not answer within the deadline of {due.budget:g} s",
                                 upstream=backend.label)
        channels = self._channels(backend)
        span = tracing.tracer().start("forward", trace, attributes={
            "modelserver.backend": backend.label, "modelserver.retry": retry or "none",
        })
        outgoing = (*outgoing, *span.context.headers().items())
        outcome, failed = "OK", False
        started = time.perf_counter()
        wait = min(self._settings.connect_timeout, remaining) if retry else 0.0
        try:
            return channels.call(channels.pick(), path, body, outgoing, due.at, connect_wait=wait)
        except grpc.FutureTimeoutError:
            outcome, failed = "unreachable", True
            raise Unavailable(f"no replica of model '{route.name}' could be reached over gRPC", retry_after=1,
                              upstream=backend.label) from None
        except grpc.RpcError as error:
            outcome, failed = error.code().name, _HTTP_STATUS.get(error.code(), 500) >= 500
            raise
        finally:
            self._m.upstream_latency.labels(route.name, backend.label).observe(time.perf_counter() - started)
            span.set("modelserver.outcome", outcome)
            span.end(error=failed)

    def _channels(self, backend: Backend) -> Channels:
        """The replica's channels, (re)made for the gRPC port its last probe gave, and anew
        each time it comes back after being down."""
        host = f"[{backend.host}]" if ":" in backend.host else backend.host
        address = f"{host}:{backend.grpc_port}"
        channels = backend.grpc
        if channels is None or (channels.address, channels.generation) != (address, backend.revivals):
            with self._channels_lock:
                channels = backend.grpc
                if channels is None or (channels.address, channels.generation) != (address, backend.revivals):
                    old, channels = channels, Channels(address, self._settings.grpc_channels,
                                                       self._settings.max_body_bytes, backend.revivals)
                    backend.grpc = channels
                    if old is not None:
                        threading.Timer(self._settings.max_request_timeout + 1, old.close).start()
        return channels


def serve(front: GrpcFront, settings: GatewaySettings) -> grpc.Server:
    """Start this worker's gRPC server on ``settings.grpc_bind`` (shared by every worker); the
    worker's drain (SIGTERM, SIGHUP) stops it as it stops HTTP."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="grpc"),
        handlers=[front],
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),  # past it: RESOURCE_EXHAUSTED
            ("grpc.max_send_message_length", -1),
        ],
        # Calls queued for a thread beyond this many are refused at once (RESOURCE_EXHAUSTED).
        maximum_concurrent_rpcs=settings.threads * 2,
    )
    if server.add_insecure_port(settings.grpc_bind) == 0:
        raise RuntimeError(f"cannot listen for gRPC on {settings.grpc_bind}")
    server.start()
    lifecycle.serve_beside(server.stop)  # the worker's drain stops it, letting calls in flight finish
    log.info("gRPC front door listening", extra={"fields": {"bind": settings.grpc_bind}})
    return server
