"""W3C trace context parsing and both tracers, the recording one on the SDK's in-memory exporter."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


def test_a_valid_traceparent_is_continued_with_its_state():
    context = tracing.parse(VALID, "congo=t61rcWkgMzE")
    assert context == tracing.TraceContext(TRACE, PARENT, True, "congo=t61rcWkgMzE")
    assert tracing.parse(f"00-{TRACE}-{PARENT}-00").sampled is False


def test_a_later_version_may_carry_more_fields():
    assert tracing.parse(f"01-{TRACE}-{PARENT}-01-what-comes-next").trace_id == TRACE


@pytest.mark.parametrize("value", [
    None, "", "garbage", f"00-{TRACE}-{PARENT}", f"00-{TRACE.upper()}-{PARENT}-01",
    f"00-{'0' * 32}-{PARENT}-01", f"00-{TRACE}-{'0' * 16}-01", f"ff-{TRACE}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-01-extra", f"00-{TRACE[:-1]}-{PARENT}-01", f"00-{TRACE}-{PARENT}-1",
    f"0x-{TRACE}-{PARENT}-01", f"00-{TRACE}-{PARENT}-01\r\nX-Injected: 1",
])
def test_an_invalid_traceparent_is_ignored(value):
    assert tracing.parse(value) is None


def test_an_oversized_or_unprintable_tracestate_is_dropped_not_the_trace():
    assert tracing.parse(VALID, "a=" + "x" * 600).state == ""
    assert tracing.parse(VALID, "a=b\x00").state == ""


def test_without_an_exporter_spans_only_propagate():
    t = tracing._Propagating()
    child = t.start("x", tracing.parse(VALID))
    assert child.context.trace_id == TRACE and child.context.span_id != PARENT
    assert child.context.headers() == {"traceparent": f"00-{TRACE}-{child.context.span_id}-01"}
    assert t.start("x", None, trace_id="a" * 32).context.trace_id == "a" * 32
    fresh = t.start("x", None).context
    assert len(fresh.trace_id) == 32 and fresh.trace_id != t.start("x", None).context.trace_id


def test_the_edge_trace_id_must_be_a_trace_id():
    assert tracing.edge_trace_id("a" * 32) == "a" * 32
    for bad in (None, "", "0" * 32, "A" * 32, "a" * 31, "g" * 32):
        assert tracing.edge_trace_id(bad) is None
    assert tracing.trace_id_of(VALID, "b" * 32) == TRACE
    assert tracing.trace_id_of("junk", "b" * 32) == "b" * 32


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_spans_are_exported_only_when_the_standard_variables_ask(env, on):
    assert tracing.exporting(env) is on
    assert tracing.install("test", env).recording is on
    tracing.use(tracing._Propagating())


def test_recorded_spans_continue_the_callers_trace_with_given_times():
    exporter = InMemorySpanExporter()
    t = tracing.recording_tracer("svc", exporter)
    start = time.monotonic() - 0.5
    parent = t.start("request", tracing.parse(VALID, "k=v"), server=True, at=start, attributes={"a": 1})
    child = t.start("model call", parent.context, at=start + 0.1)
    child.end(start + 0.3)
    parent.set("status", 200)
    parent.end(error=True)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request, call = spans["request"], spans["model call"]
    assert f"{request.context.trace_id:032x}" == TRACE == f"{call.context.trace_id:032x}"
    assert f"{request.parent.span_id:016x}" == PARENT and request.parent.is_remote
    assert call.parent.span_id == request.context.span_id
    assert parent.context.state == "k=v" and dict(request.context.trace_state) == {"k": "v"}
    assert request.attributes["a"] == 1 and request.attributes["status"] == 200
    assert request.status.status_code.name == "ERROR" and request.resource.attributes["service.name"] == "svc"
    assert abs((call.end_time - call.start_time) / 1e9 - 0.2) < 0.01
    assert request.kind.name == "SERVER" and call.kind.name == "INTERNAL"


def test_a_recorded_root_span_can_start_the_trace_nginx_named():
    exporter = InMemorySpanExporter()
    t = tracing.recording_tracer("svc", exporter)
    t.start("request", None, trace_id="c" * 32).end()
    t.start("other", None).end()
    first, second = exporter.get_finished_spans()
    assert f"{first.context.trace_id:032x}" == "c" * 32 and first.parent is None
    assert f"{second.context.trace_id:032x}" != "c" * 32


def test_an_unsampled_caller_is_not_recorded():
    exporter = InMemorySpanExporter()
    t = tracing.recording_tracer("svc", exporter)
    span = t.start("request", tracing.parse(f"00-{TRACE}-{PARENT}-00"))
    span.end()
    assert exporter.get_finished_spans() == ()
    assert span.context.trace_id == TRACE and span.context.sampled is False


def test_one_monotonic_instant_converts_to_one_wall_time_in_order():
    """A queue wait ends at the instant its model call starts: both stamps must agree (two
    separate reads of both clocks put them tens of nanoseconds apart, in either order)."""
    import time

    from services.common.tracing import wall_ns

    instants = sorted(time.monotonic() - i * 1e-6 for i in range(2000))
    stamps = [wall_ns(t) for t in instants]
    assert stamps == sorted(stamps) and all(wall_ns(t) == s for t, s in zip(instants, stamps, strict=True))
    assert abs(wall_ns(time.monotonic()) - time.time_ns()) < 50_000_000  # the wall clock, within 50 ms
