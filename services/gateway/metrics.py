"""The gateway's Prometheus metrics (created once per process)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class GatewayMetrics:
    requests: Counter
    upstream_latency: Histogram
    retries: Counter
    rejections: Counter
    inflight: Gauge
    reloads: Counter


@functools.cache
def metrics() -> GatewayMetrics:
    return GatewayMetrics(
        requests=Counter(
            "modelserver_gateway_requests_total",
            "Requests by routed model, the replica that answered (none: not forwarded) and status.",
            ["model", "backend", "status"],
        ),
        upstream_latency=Histogram(
            "modelserver_gateway_upstream_duration_seconds",
            "Time from sending a request to a replica to having its whole answer.",
            ["model", "backend"],
            buckets=_LATENCY_BUCKETS,
        ),
        retries=Counter(
            "modelserver_gateway_retries_total",
            "Requests sent again to another replica, by why (connect, dropped, 503).",
            ["model", "reason"],
        ),
        rejections=Counter(
            "modelserver_gateway_rejections_total",
            "Requests refused by the gateway itself (unauthorized, rate_limited).",
            ["reason"],
        ),
        inflight=Gauge(
            "modelserver_gateway_inflight_requests",
            "Requests being forwarded now.",
            multiprocess_mode="livesum",
        ),
        reloads=Counter(
            "modelserver_gateway_reloads_total",
            "Routes or API-key file changes seen, by file and result (applied, rejected).",
            ["file", "result"],
        ),
    )
