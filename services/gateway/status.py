"""The live status page's data: one snapshot of the whole gateway, for ``/status.json``.

The numbers are cumulative counters summed over every worker process (Prometheus'
multiprocess files, :func:`services.common.metrics.registry`), never one worker's own. The
page polls a snapshot every 2 s and turns the difference between two into request rate, 5xx
ratio and p99 (from the histogram's bucket deltas), keeping its last minutes itself. No history
is kept in the gateway: its workers are separate processes and the one answering a poll knows
only its own memory, so a server-side window would need a shared store for a view the browser
keeps for free; counters are also what survive a worker restart (the multiprocess files keep a
dead worker's counts), where a per-worker window would lose them.

Routes, canary weights and replica states are those of the worker that answers: each worker
probes every replica itself, so any of them tells the same within a probe interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from services.gateway.routing import Route
from services.gateway.upstream import Backend

# Metric families as prometheus_client names them (a counter's family drops "_total").
REQUESTS = "modelserver_gateway_requests"
LATENCY = "modelserver_gateway_upstream_duration_seconds"
PAGE_DIR = Path(__file__).with_name("page")


def replica_state(backend: Backend, model: str) -> dict[str, Any]:
    """``ready`` (its last probe said it serves ``model``), ``not ready`` or ``unprobed``."""
    if model in backend.serving:
        state = "ready"
    else:
        state = "not ready" if backend.probed else "unprobed"
    return {"address": backend.label, "state": state, "version": backend.versions.get(model)}


def _summed(families: list[Any], family: str, sample: str, key: str) -> dict[str, dict[str, float]]:
    """model -> value of label ``key`` -> sum of ``sample`` over the other labels (the page
    charts a model, not a replica)."""
    result: dict[str, dict[str, float]] = {}
    for found in families:
        if found.name != family:
            continue
        for s in found.samples:
            if s.name == sample:
                by_key = result.setdefault(s.labels["model"], {})
                by_key[s.labels[key]] = by_key.get(s.labels[key], 0.0) + s.value
    return result


def _sorted_buckets(by_le: Mapping[str, float]) -> list[list[Any]]:
    """``[[upper bound, cumulative count], ...]`` by bound; ``"+Inf"`` stays a string (JSON has
    no infinity)."""
    return [[le, by_le[le]] for le in sorted(by_le, key=float)]


def snapshot(routes: Mapping[str, Route], families: Iterable[Any], now: float) -> dict[str, Any]:
    """Every routed model: canary weights, replicas and their states, and its cumulative
    request counts by status and upstream latency buckets, at wall-clock time ``now``."""
    families = list(families)
    requests = _summed(families, REQUESTS, REQUESTS + "_total", "status")
    buckets = _summed(families, LATENCY, LATENCY + "_bucket", "le")
    models = []
    for name in sorted(routes):
        route = routes[name]
        models.append({
            "name": name,
            "canary": dict(route.canary.weights) if route.canary else None,
            "replicas": [replica_state(b, name) for b in route.balancer.backends],
            "requests": requests.get(name, {}),
            "latency_buckets": _sorted_buckets(buckets.get(name, {})),
        })
    return {"time": now, "models": models}
