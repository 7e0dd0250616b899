"""W3C trace context through every tier, and OpenTelemetry spans when an exporter is configured.

Propagation is always on and costs a regular expression and 8 random bytes per span: each tier
continues the caller's trace (or starts one), names its trace id in its access-log line, and
passes on a ``traceparent`` that names its own span. A malformed ``traceparent`` is ignored, as
the W3C rule says: a new trace starts, and the request is served as usual.

Spans are recorded and exported only when the standard OpenTelemetry variables ask for it
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, and
``OTEL_TRACES_EXPORTER`` not ``none``; ``OTEL_SERVICE_NAME``, headers, timeouts and the
sampler are read by the SDK itself). Without them the SDK is not even imported.

nginx has no tracing module in the builds the stack uses, so it records no span: it passes a
valid ``traceparent`` on, and when there is none it names the trace's id in ``X-Trace-Id`` (its
own request id, which it logs), so that the gateway's first span starts exactly that trace.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_ID_HEADER = "X-Trace-Id"  # set by nginx when it starts the trace (no traceparent came)

# version-traceid-parentid-flags; later versions may append fields after a dash.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_TRACESTATE = 512  # the W3C limit a vendor must propagate; longer values are dropped


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Where a request is in its trace: the trace, the span that sent it on, whether sampled."""

    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits: the sender's span (the receiver's parent)
    sampled: bool = True
    state: str = ""  # tracestate, passed on untouched

    def headers(self) -> dict[str, str]:
        """The headers that carry this context to the next tier."""
        out = {TRACEPARENT: f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"}
        if self.state:
            out[TRACESTATE] = self.state
        return out


def parse(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The caller's context, or None when ``traceparent`` is missing or not valid W3C."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = (tracestate or "").strip()
    if len(state) > _MAX_TRACESTATE or not state.isprintable():
        state = ""
    return TraceContext(trace_id, span_id, bool(int(flags, 16) & 1), state)


def incoming(headers: Mapping[str, str]) -> TraceContext | None:
    """The context a WSGI environ carries (``HTTP_*`` keys)."""
    return parse(headers.get("HTTP_TRACEPARENT"), headers.get("HTTP_TRACESTATE"))


def edge_trace_id(value: str | None) -> str | None:
    """The trace id nginx started (``X-Trace-Id``), when it is a valid one."""
    if value and _TRACE_ID.fullmatch(value) and value != _ZERO_TRACE:
        return value
    return None


def trace_id_of(traceparent: str | None, x_trace_id: str | None) -> str:
    """The trace a request belongs to, for a log line where no span is started (a refusal at
    the front door): the caller's, else the one nginx started, else a new one."""
    context = parse(traceparent)
    if context is not None:
        return context.trace_id
    return edge_trace_id(x_trace_id) or os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


_CLOCK_OFFSET_SECONDS = 10.0  # how long one wall-minus-monotonic offset is used before it is read again
_clock_offset: tuple[float, int] = (float("-inf"), 0)  # (when read, monotonic s; wall ns - monotonic ns)


def wall_ns(monotonic: float) -> int:
    """A ``time.monotonic()`` reading as nanoseconds since the epoch (what spans are stamped in).

    One offset between the clocks serves many conversions, so that one instant converts to one
    wall time: a queue wait's end and its model call's start are the same reading, and two
    separate reads of both clocks put them tens of nanoseconds apart, the wait ending after the
    call began. It is read again every few seconds to follow wall-clock adjustments."""
    global _clock_offset
    read_at, offset = _clock_offset
    now = time.monotonic()
    if now - read_at > _CLOCK_OFFSET_SECONDS:
        offset = time.time_ns() - int(now * 1e9)
        _clock_offset = (now, offset)
    return int(monotonic * 1e9) + offset


class Span(Protocol):
    context: TraceContext  # this span's own id: the parent of what it sends on

    def set(self, key: str, value: Any) -> None: ...

    def end(self, at: float | None = None, *, error: bool = False) -> None: ...


class Tracer(Protocol):
    recording: bool

    def start(
        self, name: str, parent: TraceContext | None, *, server: bool = False,
        trace_id: str | None = None, at: float | None = None, attributes: Mapping[str, Any] | None = None,
    ) -> Span: ...


class _Unrecorded:
    """Propagation only: a fresh span id in the caller's trace (or a new trace), nothing kept."""

    __slots__ = ("context",)

    def __init__(self, context: TraceContext) -> None:
        self.context = context

    def set(self, key: str, value: Any) -> None:
        pass

    def end(self, at: float | None = None, *, error: bool = False) -> None:
        pass


class _Propagating:
    recording = False

    def start(
        self, name: str, parent: TraceContext | None, *, server: bool = False,
        trace_id: str | None = None, at: float | None = None, attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        if parent is not None:
            return _Unrecorded(TraceContext(parent.trace_id, new_span_id(), parent.sampled, parent.state))
        return _Unrecorded(TraceContext(trace_id or os.urandom(16).hex(), new_span_id()))


class _Recorded:
    """An OpenTelemetry SDK span and the context it hands on."""

    __slots__ = ("context", "_span")

    def __init__(self, span: Any, parent: TraceContext | None) -> None:
        self._span = span
        own = span.get_span_context()
        self.context = TraceContext(
            f"{own.trace_id:032x}", f"{own.span_id:016x}", own.trace_flags.sampled,
            parent.state if parent is not None else "",
        )

    def set(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def end(self, at: float | None = None, *, error: bool = False) -> None:
        if error:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR))
        self._span.end(end_time=wall_ns(at) if at is not None else None)


class _OpenTelemetry:
    """Spans through the OpenTelemetry SDK. The trace id of a new trace can be given (nginx's)."""

    recording = True

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            TraceFlags,
            TraceState,
        )

        self._trace = trace
        self._kinds = {True: SpanKind.SERVER, False: SpanKind.INTERNAL}
        self._remote = lambda p: NonRecordingSpan(SpanContext(
            int(p.trace_id, 16), int(p.span_id, 16), is_remote=True,
            trace_flags=TraceFlags(1 if p.sampled else 0), trace_state=_trace_state(TraceState, p.state),
        ))
        self._tracer = provider.get_tracer("modelserver")
        self._ids = provider.id_generator

    def start(
        self, name: str, parent: TraceContext | None, *, server: bool = False,
        trace_id: str | None = None, at: float | None = None, attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        context = None
        if parent is not None:
            context = self._trace.set_span_in_context(self._remote(parent))
        elif trace_id is not None:
            self._ids.next_trace_id.value = int(trace_id, 16)
        span = self._tracer.start_span(
            name, context=context, kind=self._kinds[server],
            start_time=wall_ns(at) if at is not None else None, attributes=attributes,
        )
        return _Recorded(span, parent)


def _trace_state(kind: Any, state: str) -> Any:
    if not state:
        return None
    try:
        return kind.from_header([state])
    except ValueError:
        return None


def _given_trace_ids() -> Any:
    """The SDK's random ids, except a root span's trace id when one was given for it."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class GivenTraceIds(RandomIdGenerator):
        def __init__(self) -> None:
            self.next_trace_id = threading.local()

        def generate_trace_id(self) -> int:
            given = getattr(self.next_trace_id, "value", None)
            if given is not None:
                self.next_trace_id.value = None
                return given
            return super().generate_trace_id()

    return GivenTraceIds()


def exporting(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OpenTelemetry variables ask for spans to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def recording_tracer(service: str, exporter: Any = None) -> Tracer:
    """A tracer that records spans: to ``exporter`` (tests: the SDK's in-memory one, at once),
    or in batches to OTLP over HTTP, configured by the OTEL_* variables."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), id_generator=_given_trace_ids(),
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return _OpenTelemetry(provider)


_tracer: Tracer = _Propagating()


def tracer() -> Tracer:
    return _tracer


def install(service: str, environ: Mapping[str, str] | None = None) -> Tracer:
    """Choose this process's tracer once, after the fork (the batch exporter runs a thread).
    ``OTEL_SERVICE_NAME``, when set, names the service instead of ``service``."""
    global _tracer
    env = os.environ if environ is None else environ
    _tracer = recording_tracer(env.get("OTEL_SERVICE_NAME") or service) if exporting(env) else _Propagating()
    return _tracer


def use(t: Tracer) -> None:
    """Install a given tracer (tests)."""
    global _tracer
    _tracer = t
