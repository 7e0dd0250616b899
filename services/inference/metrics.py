"""The inference service's Prometheus metrics (created once per process)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class InferenceMetrics:
    requests: Counter
    latency: Histogram
    inflight: Gauge
    batch_rows: Histogram
    batch_requests: Histogram
    model_call: Histogram
    load_shed: Counter
    load_seconds: Gauge
    versions: Gauge


@functools.cache
def metrics() -> InferenceMetrics:
    return InferenceMetrics(
        requests=Counter(
            "modelserver_requests_total",
            "Inference requests by model, version, protocol and HTTP status.",
            ["model", "version", "protocol", "status"],
        ),
        latency=Histogram(
            "modelserver_request_duration_seconds",
            "Time from request to response for inference calls.",
            ["model", "protocol"],
            buckets=_LATENCY_BUCKETS,
        ),
        inflight=Gauge(
            "modelserver_inflight_requests",
            "Inference requests being handled now (scale on this: it tracks load better than CPU).",
            multiprocess_mode="livesum",
        ),
        batch_rows=Histogram(
            "modelserver_batch_size",
            "Rows per model call: the batch size adaptive batching achieved.",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
        ),
        batch_requests=Histogram(
            "modelserver_batch_requests",
            "Requests merged into one model call.",
            ["model", "version"],
            buckets=_ROW_BUCKETS,
        ),
        model_call=Histogram(
            "modelserver_model_call_seconds",
            "Duration of one model call (one batch).",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
        ),
        load_shed=Counter(
            "modelserver_load_shed_total",
            "Requests refused with 503 by admission control.",
            ["model"],
        ),
        load_seconds=Gauge(
            "modelserver_model_load_seconds",
            "Seconds the last load of a model version took (load + compile + warm-up).",
            ["model", "version"],
            multiprocess_mode="max",
        ),
        versions=Gauge(
            "modelserver_model_version_loaded",
            "1 while a model version is loaded and serving in some worker.",
            ["model", "version"],
            multiprocess_mode="livemax",
        ),
    )
