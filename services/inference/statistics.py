"""Triton's statistics extension (``GET /v2/models[/<m>[/versions/<v>]]/stats``), server-wide.

A request is recorded in the worker that served it, in Prometheus counters; with several Gunicorn
workers those live in the shared multiprocess files (:mod:`services.common.metrics`), so a stats
request, whichever worker answers it, sums every worker's counts: the server's, not one worker's.
Execution and row counts come from the batcher's own histograms (one observation per model call).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.samples import Sample

from services.inference.batching import Timing
from services.inference.metrics import InferenceMetrics

# Triton's $inference_stats keys, in its order; each a {"count", "ns"} duration statistic.
STATS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
_BATCH_STATS = ("compute_input", "compute_infer", "compute_output")

# Sample names (prometheus_client appends _total to counters, _count/_sum to histograms).
_STAT_COUNT = "modelserver_inference_stats_total"
_STAT_SECONDS = "modelserver_inference_stats_seconds_total"
_BATCHES = "modelserver_batch_executions_total"
_BATCH_SECONDS = "modelserver_batch_execution_seconds_total"
_LAST = "modelserver_last_inference_timestamp_seconds"
_EXECUTIONS = "modelserver_model_call_seconds_count"
_ROWS = "modelserver_batch_size_sum"
PREFIX = "modelserver_"


@dataclass
class RequestTiming:
    """One inference request's seconds: decoding its input, in the batcher, encoding its output."""

    compute_input: float = 0.0
    batcher: Timing | None = None
    compute_output: float = 0.0


def record_request(
    m: InferenceMetrics, model: str, version: str, *, ok: bool, seconds: float, timing: RequestTiming
) -> None:
    """A request for ``model``/``version`` answered: ``seconds`` from arrival to its response."""
    outcome = "success" if ok else "fail"
    m.stats_count.labels(model, version, outcome).inc()
    m.stats_seconds.labels(model, version, outcome).inc(max(0.0, seconds))  # "now" if unstamped
    if not ok:
        return
    m.last_inference.labels(model, version).set(time.time())
    batcher = timing.batcher or Timing()
    # Every successful request has each phase once: their counts are the success count, so
    # only their seconds are kept (fewer shared-memory writes on the request path).
    for stat, spent in (
        ("queue", batcher.queue), ("compute_input", timing.compute_input),
        ("compute_infer", batcher.compute), ("compute_output", timing.compute_output),
    ):
        m.stats_seconds.labels(model, version, stat).inc(spent)


def record_execution(
    m: InferenceMetrics, model: str, version: str, rows: int, seconds: float, max_batch_size: int
) -> None:
    """One model call of ``rows`` rows. Batch sizes past the configured maximum (one request
    larger than a batch) are not broken out: the label's values stay bounded."""
    if rows <= max_batch_size:
        m.batch_executions.labels(model, version, str(rows)).inc()
        m.batch_seconds.labels(model, version, str(rows)).inc(seconds)


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def report(samples: Iterable[Sample], selected: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Triton's ``$stats_model_response`` for ``selected`` (model, version) pairs, from the
    summed samples; a version nothing was recorded for reports zeros, as Triton's does."""
    wanted = {(name, str(version)) for name, version in selected}
    counts: dict[tuple[str, str, str], float] = {}
    seconds: dict[tuple[str, str, str], float] = {}
    batches: dict[tuple[str, str], dict[int, list[float]]] = {}
    scalars: dict[tuple[str, str, str], float] = {}
    for sample in samples:
        labels = sample.labels
        key = (labels.get("model", ""), labels.get("version", ""))
        if key not in wanted:
            continue
        if sample.name == _STAT_COUNT:
            counts[(*key, labels["stat"])] = sample.value
        elif sample.name == _STAT_SECONDS:
            seconds[(*key, labels["stat"])] = sample.value
        elif sample.name in (_BATCHES, _BATCH_SECONDS):
            entry = batches.setdefault(key, {}).setdefault(int(labels["batch_size"]), [0.0, 0.0])
            entry[0 if sample.name == _BATCHES else 1] = sample.value
        elif sample.name in (_LAST, _EXECUTIONS, _ROWS):
            scalars[(*key, sample.name)] = sample.value

    def duration(key: tuple[str, str], stat: str) -> dict[str, int]:
        counted = stat if stat in ("success", "fail") else "success"  # phases of successful ones
        return {"count": int(counts.get((*key, counted), 0)), "ns": _ns(seconds.get((*key, stat), 0.0))}

    model_stats = []
    for name, version in sorted(selected, key=lambda pair: (pair[0], pair[1])):
        key = (name, str(version))
        model_stats.append({
            "name": name,
            "version": str(version),
            "last_inference": round(scalars.get((*key, _LAST), 0.0) * 1000),
            "inference_count": int(scalars.get((*key, _ROWS), 0)),
            "execution_count": int(scalars.get((*key, _EXECUTIONS), 0)),
            "inference_stats": {stat: duration(key, stat) for stat in STATS},
            "batch_stats": [
                {
                    "batch_size": size,
                    # A batch's input and output are handled per request, outside the call.
                    **{stat: {"count": int(count), "ns": _ns(spent) if stat == "compute_infer" else 0}
                       for stat in _BATCH_STATS},
                }
                for size, (count, spent) in sorted(batches.get(key, {}).items())
            ],
        })
    return {"model_stats": model_stats}
