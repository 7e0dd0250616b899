"""What an inference call does whatever its transport: HTTP views and gRPC servicers alike.

Finding the model version a request names, and the per-request accounting (metrics, Triton's
statistics, the trace span, the access-log line, admission control's latency samples and the
load-shedding count), written once so that a gRPC call and an HTTP call are counted alike.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from services.common import logs, naturals, tracing
from services.common.errors import Forbidden, NotFound, Overloaded
from services.inference import model_config, repository, statistics
from services.inference.batching import Timing
from services.inference.config import InferenceSettings
from services.inference.metrics import InferenceMetrics
from services.inference.model_store import ModelStore
from services.inference.serving import ServedVersion
from services.runtime import frontdoor, lifecycle

ACCESS = logs.AccessLog("modelserver.inference.access")


def parsed_version(name: str, version: str | None) -> int | None:
    """A version as a request names it (path segment, metadata field), or None for the default."""
    if version is None:
        return None
    wanted = naturals.parse(version)
    if wanted is None:
        raise NotFound(f"model '{name}' version '{version[:40]}' not found: versions are integers")
    return wanted


def lookup(
    store: ModelStore[ServedVersion], name: str, version: str | None, label: str | None = None
) -> tuple[int, ServedVersion]:
    """The served version a request names: by number, by label, or the newest."""
    if label is not None:
        return store.get_labelled(name, label)
    return store.get(name, parsed_version(name, version))


def stats_selection(
    store: ModelStore[ServedVersion], name: str | None, version: str | None
) -> list[tuple[str, int]]:
    """The (model, version) pairs a statistics request covers: all, a model's, or one version."""
    if not name:
        return [(n, v) for n in store.names() for v in sorted(store.model(n).served)]
    model = store.model(name)
    wanted = parsed_version(name, version)
    if wanted is None:
        return [(name, v) for v in sorted(model.served)]
    if wanted in model.served or wanted in model.statuses:
        return [(name, wanted)]
    raise NotFound(f"model '{name}' version {wanted} not found")


def scheduling(settings: InferenceSettings) -> model_config.Scheduling:
    """The batching and version policy the model configuration extension shows."""
    return model_config.Scheduling(
        max_batch_size=settings.max_batch_size, max_queue_delay_ms=settings.max_latency_ms,
        kept_versions=settings.kept_versions, workers=settings.workers,
    )


def config_of(
    store: ModelStore[ServedVersion], name: str, served: ServedVersion, policy: model_config.Scheduling
) -> dict:
    """Triton's model configuration of a served version (the model config file's policy, if any)."""
    source = store.source(name)
    if source is not None:
        policy = dataclasses.replace(policy, kept_versions=source.kept, specific_versions=source.specific)
    return model_config.model_config(name, served.servable, policy)


def check_control(mode: str, address: str | None) -> None:
    """Refuse a repository load or unload that ``INFERENCE_REPOSITORY_CONTROL`` does not allow."""
    if repository.control_allowed(mode, address):
        return
    raise Forbidden(
        "model control is off here (INFERENCE_REPOSITORY_CONTROL=off)" if mode == "off" else
        "model control is open to loopback clients only (INFERENCE_REPOSITORY_CONTROL=loopback)"
    )


def readiness(store: ModelStore[ServedVersion], settings: InferenceSettings) -> tuple[bool, str]:
    """Whether this worker takes work, and why not: /readyz, V2's ServerReady, gRPC health."""
    if lifecycle.is_draining():
        return False, "draining"
    if store.ready():
        return True, "ready"
    if not store.names():
        where = settings.model_config_file or settings.model_root
        return False, f"no models found in {where}"
    unloaded = store.unloaded()
    waiting = [n for n in store.names() if not store.model(n).served and n not in unloaded]
    return False, f"models not loaded yet: {waiting}"


@dataclass(eq=False)
class Call:
    """One model call (predict or infer) in flight, from arrival to its answer."""

    protocol: str  # the metrics' label: tfs, v2 (HTTP), tfs_grpc, v2_grpc
    name: str
    request_id: str
    span: tracing.Span
    arrived: float  # time.monotonic() when its bytes arrived
    started: float = field(default_factory=time.perf_counter)
    version: int | str = ""
    timing: statistics.RequestTiming | None = None
    shed: bool = False  # refused by admission control (not a model still loading)

    def measure(self) -> statistics.RequestTiming:
        """Start the statistics' clock: the request has reached a model version."""
        self.timing = statistics.RequestTiming()
        return self.timing


def refuse_if_waited_too_long(arrived: float, budget: float) -> None:
    """A call that waited longer than the whole budget for a free thread is refused before its
    body is decoded, so that shedding stays cheap and the queue behind it drains fast."""
    waited = time.monotonic() - arrived
    if waited > budget:
        raise Overloaded(
            f"overloaded: waited {waited * 1000:.0f} ms for a worker thread, over the "
            f"{budget * 1000:.0f} ms budget; retry later",
        )


class Accounting:
    """Counts every model call of one worker, from :meth:`begin` to :meth:`finish`."""

    def __init__(
        self, store: ModelStore[ServedVersion], m: InferenceMetrics, admission: frontdoor.Admission,
    ) -> None:
        self._store = store
        self._m = m
        self._admission = admission

    def begin(
        self, protocol: str, name: str, request_id: str, parent: tracing.TraceContext | None, *,
        method: str, path: str, arrived: float,
    ) -> Call:
        span = tracing.tracer().start(
            "inference request", parent, server=True, at=arrived,
            attributes={"http.request.method": method, "url.path": path},
        )
        self._m.inflight.inc()
        return Call(protocol, name, request_id, span, arrived)

    def finish(self, call: Call, status: int, *, method: str, path: str) -> None:
        """``status``: the HTTP status of the answer (a gRPC call's, its error's equivalent)."""
        m = self._m
        m.inflight.dec()
        version = str(call.version)
        model = call.name if call.name in self._store.names() else "unknown"  # bounded label cardinality
        m.requests.labels(model, version, call.protocol, str(status)).inc()
        m.latency.labels(model, call.protocol).observe(time.perf_counter() - call.started)
        if status == 200:
            self._admission.observe(time.monotonic() - call.arrived)  # queue included
        if call.shed:
            m.load_shed.labels(model).inc()
        timing = call.timing
        if timing is not None:  # the request reached a model version: Triton's statistics
            statistics.record_request(
                m, call.name, version, ok=status == 200,
                seconds=time.monotonic() - call.arrived, timing=timing,
            )
        span = call.span
        span.set("http.response.status_code", status)
        span.set("modelserver.model", model)
        span.set("modelserver.version", version)
        batcher = timing.batcher if timing is not None else None
        if batcher is not None and batcher.ended:
            trace_batch(span, batcher)
        span.end(error=status >= 500)
        if ACCESS.on():
            ACCESS.write({
                "request_id": call.request_id, "trace_id": span.context.trace_id,
                "method": method, "path": path, "model": model, "version": version, "status": status,
                "duration_ms": round((time.perf_counter() - call.started) * 1000, 3),
            })


def trace_batch(parent: tracing.Span, timing: Timing) -> None:
    """The request's wait in the batcher's queue and the model call it was part of."""
    tracer = tracing.tracer()
    if not tracer.recording:
        return
    tracer.start("queue wait", parent.context, at=timing.queued).end(timing.started)
    call = tracer.start("model call", parent.context, at=timing.started, attributes={
        "modelserver.batch.rows": timing.batch_rows, "modelserver.batch.requests": timing.batch_requests,
    })
    call.end(timing.ended)
