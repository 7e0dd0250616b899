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
    queue_wait: Histogram
    load_shed: Counter
    load_seconds: Gauge
    versions: Gauge
    load_failed: Gauge
    config_rejected: Gauge
    # The statistics extension's (services.inference.statistics); summed over workers like all.
    stats_count: Counter
    stats_seconds: Counter
    batch_executions: Counter
    batch_seconds: Counter
    last_inference: Gauge


@functools.cache
def metrics() -> InferenceMetrics:
    return InferenceMetrics(
        requests=Counter(
            "modelserver_requests_total",
            "Inference requests by model, version, protocol (tfs, v2; over gRPC tfs_grpc, v2_grpc) and HTTP "
            "status (a gRPC call: its error's HTTP equivalent).",
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
        queue_wait=Histogram(
            "modelserver_queue_wait_seconds",
            "Time from a request's arrival at the server to the start of the model call that "
            "serves it (thread wait plus batch queue): the part of latency that is not the model.",
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
        config_rejected=Gauge(
            "modelserver_model_config_rejected",
            "1 while the model config file's content was refused (the last good one stays in "
            "force); 0 once a good one is in force.",
            multiprocess_mode="livemax",
        ),
        load_failed=Gauge(
            "modelserver_model_load_failed",
            "1 while the last attempt to load a model version failed (it serves the versions it "
            "had); 0 for versions that loaded.",
            ["model", "version"],
            multiprocess_mode="livemax",
        ),
        stats_count=Counter(
            "modelserver_inference_stats",
            "Inference requests per model version by outcome (stat: success or fail).",
            ["model", "version", "stat"],
        ),
        stats_seconds=Counter(
            "modelserver_inference_stats_seconds",
            "Seconds spent per model version: in requests by outcome (success, fail) and, for "
            "successful ones, in each phase (queue, compute_input, compute_infer, compute_output).",
            ["model", "version", "stat"],
        ),
        batch_executions=Counter(
            "modelserver_batch_executions",
            "Model calls per model version and exact batch size (up to the maximum batch size).",
            ["model", "version", "batch_size"],
        ),
        batch_seconds=Counter(
            "modelserver_batch_execution_seconds",
            "Seconds of model calls per model version and exact batch size.",
            ["model", "version", "batch_size"],
        ),
        last_inference=Gauge(
            "modelserver_last_inference_timestamp_seconds",
            "Unix time of the last successful inference per model version.",
            ["model", "version"],
            multiprocess_mode="max",
        ),
    )
