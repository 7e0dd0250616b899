"""One trace across the real local stack: nginx → gateway → inference.

A stack of its own, with every tier's access log on and spans exported over OTLP/HTTP (the
standard OTEL_* variables) to a collector in this test process, which decodes them with
OpenTelemetry's own protobuf messages.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import start_stack
from tests.support.standin import LoopbackServer

DIGIT = (Path(__file__).resolve().parents[2] / "examples/digit-0.json").read_bytes()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("E2E_BASE_URL")), reason="reads the local stack's logs and receives its spans",
)


class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, with its service's name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (the stdlib's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                export = ExportTraceServiceRequest.FromString(body)
                for resource_spans in export.resource_spans:
                    service = next(a.value.string_value for a in resource_spans.resource.attributes
                                   if a.key == "service.name")
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend((service, s) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = LoopbackServer(Handler)
        self.url = self.server.url

    def trace(self, trace_id: str, count: int, timeout: float = 30) -> dict[str, tuple[str, object]]:
        """The trace's spans by name, once ``count`` have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {s.name: (svc, s) for svc, s in list(self.spans) if s.trace_id.hex() == trace_id}
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"trace {trace_id}: only {sorted(found)} arrived")


@pytest.fixture(scope="module")
def traced(tmp_path_factory, digits_version):
    collector = Collector()
    env = {
        "GATEWAY_ACCESS_LOG": "1", "INFERENCE_ACCESS_LOG": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    url, stack = start_stack(tmp_path_factory.mktemp("traced"), digits_version, env=env)
    yield url, stack, collector
    assert stack.stop() == 0
    collector.server.close()


def log_entries(stack, name: str, timeout: float = 10, **match: str) -> list[dict]:
    """The JSON lines of one tier's log that carry every ``match`` field (waits for them)."""
    path = stack.run_dir / "logs" / f"{name}.log"
    deadline = time.monotonic() + timeout
    while True:
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if all(entry.get(k) == v for k, v in match.items()):
                    entries.append(entry)
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def predict(url: str, request_id: str, **headers: str) -> requests.Response:
    return requests.post(f"{url}/v1/models/digits:predict", data=DIGIT, timeout=30,
                         headers={"Content-Type": "application/json", "X-Request-ID": request_id, **headers})


def inference_entries(stack, **match: str) -> list[dict]:
    replicas = sorted(p.stem for p in (stack.run_dir / "logs").glob("inference-*.log"))
    deadline = time.monotonic() + 10
    while True:
        found = [e for r in replicas for e in log_entries(stack, r, timeout=0, **match)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_the_callers_trace_is_in_every_tiers_log_line_and_its_spans_link_up(traced):
    url, stack, collector = traced
    response = predict(url, "trace-given", traceparent=f"00-{TRACE}-{PARENT}-01", tracestate="vendor=x")
    assert response.status_code == 200
    [edge] = log_entries(stack, "nginx-access", request_id="trace-given")
    [gateway] = log_entries(stack, "gateway", request_id="trace-given")
    [inference] = inference_entries(stack, request_id="trace-given")
    assert edge["trace_id"] == gateway["trace_id"] == inference["trace_id"] == TRACE

    spans = collector.trace(TRACE, 5)
    assert {name: svc for name, (svc, _) in spans.items()} == {
        "gateway request": "modelserver-gateway", "forward": "modelserver-gateway",
        "inference request": "modelserver-inference", "queue wait": "modelserver-inference",
        "model call": "modelserver-inference",
    }
    span = {name: s for name, (_, s) in spans.items()}
    assert span["gateway request"].parent_span_id.hex() == PARENT
    assert span["forward"].parent_span_id == span["gateway request"].span_id
    assert span["inference request"].parent_span_id == span["forward"].span_id
    assert span["model call"].parent_span_id == span["inference request"].span_id
    assert span["queue wait"].parent_span_id == span["inference request"].span_id
    assert span["gateway request"].trace_state == "vendor=x" == span["inference request"].trace_state
    forward = {a.key: a.value.string_value for a in span["forward"].attributes}
    assert forward["modelserver.backend"] == gateway["backend"] and forward["modelserver.outcome"] == "200"


@pytest.mark.parametrize("traceparent", [None, "00-zz-not-valid-01", f"00-{'0' * 32}-{PARENT}-01"])
def test_without_a_valid_traceparent_nginx_starts_the_trace_every_tier_follows(traced, traceparent):
    url, stack, collector = traced
    request_id = f"trace-new-{traceparent is None}-{len(traceparent or '')}"
    headers = {} if traceparent is None else {"traceparent": traceparent}
    assert predict(url, request_id, **headers).status_code == 200
    [edge] = log_entries(stack, "nginx-access", request_id=request_id)
    [gateway] = log_entries(stack, "gateway", request_id=request_id)
    [inference] = inference_entries(stack, request_id=request_id)
    trace_id = edge["trace_id"]
    assert len(trace_id) == 32 and trace_id not in (TRACE, "0" * 32)
    assert gateway["trace_id"] == inference["trace_id"] == trace_id
    spans = collector.trace(trace_id, 5)
    root = spans["gateway request"][1]
    assert root.parent_span_id == b"", "the gateway's span is the trace's first"


def test_a_grpc_call_carries_the_callers_trace_through_every_tier_and_its_spans_link_up(traced):
    from tests.support import grpc_clients  # TF Serving's stubs: TensorFlow's protos, imported late

    url, stack, collector = traced
    trace = "5bf92f3577b34da6a3ce929d0e0e4737"
    pixels = np.asarray(json.loads(DIGIT)["instances"], dtype=np.float32)
    client = grpc_clients.TFServing(stack.grpc, metadata=(
        ("x-request-id", "trace-grpc"), ("traceparent", f"00-{trace}-{PARENT}-01"), ("tracestate", "vendor=g")))
    try:
        assert grpc_clients.only_output(client.predict(grpc_clients.predict_request("digits", pixels))).shape == (1, 10)
    finally:
        client.close()
    [edge] = log_entries(stack, "nginx-access", request_id="trace-grpc")
    [gateway] = log_entries(stack, "gateway", request_id="trace-grpc")
    [inference] = inference_entries(stack, request_id="trace-grpc")
    assert edge["trace_id"] == gateway["trace_id"] == inference["trace_id"] == trace
    assert gateway["protocol"] == "grpc"

    span = {name: s for name, (_, s) in collector.trace(trace, 5).items()}
    assert span["gateway request"].parent_span_id.hex() == PARENT
    assert span["forward"].parent_span_id == span["gateway request"].span_id
    assert span["inference request"].parent_span_id == span["forward"].span_id
    assert span["model call"].parent_span_id == span["inference request"].span_id
    assert span["gateway request"].trace_state == "vendor=g" == span["inference request"].trace_state
    forward = {a.key: a.value.string_value for a in span["forward"].attributes}
    assert forward["modelserver.backend"] == gateway["backend"] and forward["modelserver.outcome"] == "OK"
