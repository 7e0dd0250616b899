"""The gateway's Prometheus metrics (created once per process)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

# Every reason the gateway refuses a request for: each series exists (at 0) from the start, so
# a rate of refusals reads 0 rather than "no data" until the first one.
REJECTION_REASONS = ("overloaded", "rate_limited", "unauthorized")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class GatewayMetrics:
    requests: Counter
    upstream_latency: Histogram
    retries: Counter
    rejections: Counter
    inflight: Gauge
    reloads: Counter
    backends: Gauge
    backends_ready: Gauge
    _published: set[str] = field(default_factory=set)

    def publish_readiness(self, detail: Mapping[str, Mapping[str, int]]) -> None:
        """Set the replica gauges from ``Router.readiness()``'s {model: {backends, ready}}. A
        model no longer routed drops to 0 (a multiprocess gauge cannot be removed)."""
        for model, counts in detail.items():
            self.backends.labels(model).set(counts["backends"])
            self.backends_ready.labels(model).set(counts["ready"])
        for model in self._published - set(detail):
            self.backends.labels(model).set(0)
            self.backends_ready.labels(model).set(0)
        self._published.clear()
        self._published.update(detail)


@functools.cache
def metrics() -> GatewayMetrics:
    created = GatewayMetrics(
        requests=Counter(
            "modelserver_gateway_requests_total",
            "Requests by routed model, the replica that answered (none: not forwarded), protocol "
            "(http, grpc) and status (a gRPC code as the HTTP status it stands for).",
            ["model", "backend", "protocol", "status"],
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
        backends=Gauge(
            "modelserver_gateway_backends",
            "Replicas the routes give a model (after DNS), ready or not.",
            ["model"],
            multiprocess_mode="livemax",
        ),
        backends_ready=Gauge(
            "modelserver_gateway_backends_ready",
            "Replicas whose last health probe said they serve the model.",
            ["model"],
            multiprocess_mode="livemax",
        ),
    )
    for reason in REJECTION_REASONS:
        created.rejections.labels(reason)
    return created
