"""The inference request's spans (request, queue wait, model call) on the SDK's in-memory
exporter, in-process with the real model; and its access-log line naming the trace."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import tracing

DIGIT = (Path(__file__).resolve().parents[3] / "examples/digit-0.json").read_bytes()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def client(tmp_path_factory, digits_version):
    from services.inference.app import create_app
    from services.inference.config import load_settings
    from tests.support import models

    root = tmp_path_factory.mktemp("traced") / "models"
    models.copy_version(digits_version, root, "digits", 1)
    app = create_app(load_settings(model_root=root, poll_seconds=0.0, access_log=True))
    return app.test_client()


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.use(tracing.recording_tracer("modelserver-inference", exporter))
    yield exporter
    tracing.use(tracing._Propagating())


def predict(client, **headers):
    return client.post("/v1/models/digits:predict", data=DIGIT, content_type="application/json", headers=headers)


def test_a_prediction_is_a_request_span_with_its_queue_wait_and_model_call(client, spans):
    response = predict(client, traceparent=f"00-{TRACE}-{PARENT}-01")
    assert response.status_code == 200
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert set(by_name) == {"inference request", "queue wait", "model call"}
    request, wait, call = by_name["inference request"], by_name["queue wait"], by_name["model call"]
    assert {f"{s.context.trace_id:032x}" for s in by_name.values()} == {TRACE}
    assert f"{request.parent.span_id:016x}" == PARENT
    assert wait.parent.span_id == call.parent.span_id == request.context.span_id
    assert request.attributes["modelserver.model"] == "digits"
    assert request.attributes["modelserver.version"] == "1"
    assert request.attributes["http.response.status_code"] == 200
    assert call.attributes["modelserver.batch.rows"] >= 1 and call.attributes["modelserver.batch.requests"] >= 1
    # In order, within the request: arrive, queue, run, answer.
    assert request.start_time <= wait.start_time <= wait.end_time <= call.start_time
    assert call.start_time < call.end_time <= request.end_time


def test_an_invalid_traceparent_starts_a_new_trace_and_is_served(client, spans):
    response = predict(client, traceparent="00-not-a-trace-01")
    assert response.status_code == 200
    request = next(s for s in spans.get_finished_spans() if s.name == "inference request")
    assert request.parent is None and f"{request.context.trace_id:032x}" != TRACE


def test_a_refused_request_is_a_failed_span(client, spans):
    response = client.post("/v1/models/digits:predict", data=b"{", content_type="application/json")
    assert response.status_code == 400
    (request,) = spans.get_finished_spans()
    assert request.attributes["http.response.status_code"] == 400


def test_the_access_log_line_names_the_trace(client, caplog):
    with caplog.at_level(logging.INFO, logger="modelserver.inference.access"):
        assert predict(client, traceparent=f"00-{TRACE}-{PARENT}-01").status_code == 200
    (line,) = [r for r in caplog.records if r.name == "modelserver.inference.access"]
    fields = line.fields
    assert fields["trace_id"] == TRACE and fields["status"] == 200 and fields["model"] == "digits"
    assert json.dumps(fields)  # one JSON line, as the formatter writes it
