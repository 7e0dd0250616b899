"""The gateway's replica gauges and the refusal counters exported before the first refusal."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from services.gateway import metrics as gateway_metrics
from services.gateway.metrics import GatewayMetrics


def with_own_gauges() -> tuple[GatewayMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    real = gateway_metrics.metrics()
    fields = {name: getattr(real, name) for name in GatewayMetrics.__dataclass_fields__ if not name.startswith("_")}
    fields["backends"] = Gauge("backends", "test", ["model"], registry=registry)
    fields["backends_ready"] = Gauge("ready", "test", ["model"], registry=registry)
    return GatewayMetrics(**fields), registry


def counts(registry: CollectorRegistry, model: str) -> tuple[float | None, float | None]:
    return (registry.get_sample_value("backends", {"model": model}),
            registry.get_sample_value("ready", {"model": model}))


def test_replica_gauges_follow_the_routers_readiness_and_a_model_no_longer_routed_drops_to_0():
    m, registry = with_own_gauges()
    m.publish_readiness({"digits": {"backends": 2, "ready": 1}, "mnist": {"backends": 1, "ready": 1}})
    assert counts(registry, "digits") == (2, 1) and counts(registry, "mnist") == (1, 1)
    m.publish_readiness({"digits": {"backends": 3, "ready": 3}})  # a reload dropped mnist
    assert counts(registry, "digits") == (3, 3) and counts(registry, "mnist") == (0, 0)


def test_every_rejection_reason_is_exported_before_the_first_rejection():
    gateway_metrics.metrics()
    for reason in gateway_metrics.REJECTION_REASONS:
        assert REGISTRY.get_sample_value("modelserver_gateway_rejections_total", {"reason": reason}) is not None
