"""The inference service's gRPC server: one in every Gunicorn worker, all on one port.

Each worker builds its own after the fork (TensorFlow and gRPC's core are not fork-safe) and
binds ``INFERENCE_GRPC_BIND`` with ``SO_REUSEPORT``, so the kernel spreads connections over the
workers as it does for HTTP. A call runs in a thread of the server's pool and blocks in the same
batcher as an HTTP request for the same version: the two are batched together. The worker's
drain stops the server gracefully (``lifecycle.serve_beside``).

The servicers are thin: :class:`Rpc` is what every call shares (metadata, request id, trace
context, deadline, errors as gRPC codes); the protocols are in ``grpc_tfs`` and ``grpc_v2``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import requestid, tracing
from services.common.errors import GatewayTimeout, Overloaded, ServingError, note
from services.inference import calls
from services.inference.calls import Accounting, Call
from services.inference.config import InferenceSettings
from services.inference.model_store import ModelStore
from services.inference.repository import Repository
from services.inference.serving import ServedVersion
from services.runtime import lifecycle

log = logging.getLogger(__name__)

REQUEST_ID = requestid.HEADER.lower()  # gRPC metadata keys are lowercase
# Calls a worker holds at once (running and queued for a thread) before gRPC itself refuses
# with RESOURCE_EXHAUSTED: room for a queue, as the HTTP front door allows (4 x threads).
QUEUE_FACTOR = 4

T = TypeVar("T")


_arrival = threading.local()


class Arrivals(grpc.ServerInterceptor):
    """Notes when a call arrived. gRPC looks a call's handler up (interceptors included) in its
    polling thread, as the call arrives, and only then queues it for a thread of the pool: the
    time it then waits for a thread is queue time, which admission control must see, as the
    HTTP side's front door sees a request's wait for a thread."""

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        arrived = time.monotonic()
        found = continuation(details)
        if found is None or found.unary_unary is None:
            return found
        inner = found.unary_unary

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            _arrival.at = arrived
            return inner(request, context)

        return found._replace(unary_unary=timed)


class Rpc:
    """One incoming call: its metadata, request id, trace context and deadline."""

    __slots__ = ("context", "arrived", "metadata", "request_id")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self.context = context
        self.arrived = getattr(_arrival, "at", None) or time.monotonic()
        _arrival.at = None
        self.metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        self.request_id = requestid.accept_or_generate(self.metadata.get(REQUEST_ID))

    def parent(self) -> tracing.TraceContext | None:
        return tracing.parse(self.metadata.get(tracing.TRACEPARENT), self.metadata.get(tracing.TRACESTATE))

    def timeout(self, cap: float) -> float:
        """Seconds the call may wait for the model: the client's deadline, at most ``cap``."""
        remaining = self.context.time_remaining()
        if remaining is None:
            return cap
        if remaining <= 0:
            raise GatewayTimeout("the call's deadline passed before it reached the model")
        return min(remaining, cap)

    def peer_host(self) -> str:
        """The client's address (``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``; ``ipv6:[::1]:5000`` -> ``::1``)."""
        peer = self.context.peer()
        _, _, address = peer.partition(":")
        host = address.rpartition(":")[0] if address.count(":") >= 1 else address
        return host.strip("[]")


def handler(method: Callable[[Any, Any, Rpc], T]) -> Callable[[Any, Any, grpc.ServicerContext], T]:
    """A servicer method taking an :class:`Rpc`; its errors leave as their gRPC codes, with the
    request id (initial and trailing metadata) and the retry hint (trailing) of each error."""

    @functools.wraps(method)
    def serve(self: Any, request: Any, context: grpc.ServicerContext) -> T:
        rpc = Rpc(context)
        echo = ((REQUEST_ID, rpc.request_id),)
        context.send_initial_metadata(echo)
        try:
            result = method(self, request, rpc)
        except ServingError as error:
            note(error)
            fail(context, error, echo)
        except Exception:  # a bug: logged with its traceback, shown as nothing more
            log.exception("unhandled error in %s", method.__name__)
            fail(context, ServingError("internal error"), echo)
        context.set_trailing_metadata(echo)
        return result

    return serve


def fail(context: grpc.ServicerContext, error: ServingError, metadata: tuple[tuple[str, str], ...]) -> None:
    context.set_trailing_metadata(metadata + error.retry_metadata())
    context.abort(grpc.StatusCode[error.grpc_code], error.message)


class ModelCalls:
    """Predict and ModelInfer counted as HTTP's model calls are (``calls.Accounting``)."""

    def __init__(self, accounting: Accounting, budget: float) -> None:
        self._accounting = accounting
        self._budget = budget  # seconds: the admission budget (INFERENCE_QUEUE_BUDGET_MS)

    def run(self, rpc: Rpc, protocol: str, name: str, path: str, work: Callable[[Call], T]) -> T:
        call = self._accounting.begin(
            protocol, name, rpc.request_id, rpc.parent(), method="POST", path=path, arrived=rpc.arrived,
        )
        status = 500
        try:
            calls.refuse_if_waited_too_long(rpc.arrived, self._budget)
            result = work(call)
            status = 200
            return result
        except ServingError as error:
            status = error.status
            call.shed = isinstance(error, Overloaded)
            raise
        finally:
            self._accounting.finish(call, status, method="POST", path=path)


class Health(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health``: SERVING while this worker is ready, NOT_SERVING otherwise
    (draining, models loading), for the server ("") and each service it runs."""

    WATCH_EVERY = 0.5  # seconds between looks at readiness for a Watch stream

    def __init__(self, ready: Callable[[], bool], services: frozenset[str]) -> None:
        self._ready = ready
        self._services = services | {""}

    def _status(self, service: str, context: grpc.ServicerContext) -> int:
        if service not in self._services:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service[:100]!r}")
        return health_pb2.HealthCheckResponse.SERVING if self._ready() else health_pb2.HealthCheckResponse.NOT_SERVING

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802  (gRPC's name)
        return health_pb2.HealthCheckResponse(status=self._status(request.service, context))

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        last = None
        while context.is_active():
            status = self._status(request.service, context)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            time.sleep(self.WATCH_EVERY)


def start(
    settings: InferenceSettings, store: ModelStore[ServedVersion], accounting: Accounting, repo: Repository,
) -> int:
    """Start this worker's gRPC server on ``settings.grpc_bind``; returns the port it bound."""
    from services.inference import grpc_tfs, grpc_v2  # their protobuf modules load TensorFlow's

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", -1),
        ],
        maximum_concurrent_rpcs=QUEUE_FACTOR * settings.threads,
        interceptors=[Arrivals()],
    )
    model_calls = ModelCalls(accounting, settings.queue_budget_ms / 1000)
    services = grpc_tfs.add(server, settings, store, model_calls) | grpc_v2.add(
        server, settings, store, model_calls, repo
    )
    health_pb2_grpc.add_HealthServicer_to_server(
        Health(lambda: calls.readiness(store, settings)[0], frozenset(services)), server
    )
    port = server.add_insecure_port(settings.grpc_bind)
    server.start()

    def stop(grace: float) -> threading.Event:
        return server.stop(grace)

    lifecycle.serve_beside(stop)
    log.info("gRPC server listening", extra={"fields": {"bind": settings.grpc_bind, "port": port}})
    return port
