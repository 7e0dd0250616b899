"""A model version ready for requests: the loaded model plus its batcher and metric handles."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from services.inference.batching import Batcher, BatchPolicy
from services.inference.config import InferenceSettings
from services.inference.metrics import InferenceMetrics
from services.inference.servable import Servable


@dataclass(frozen=True)
class ServedVersion:
    servable: Servable
    batcher: Batcher

    def signature_matches(self, other: ServedVersion) -> bool:
        return self.servable.signature_matches(other.servable)


def warm_up_sizes(max_batch_size: int) -> list[int]:
    sizes = [1]
    while sizes[-1] * 2 <= max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


def loader(settings: InferenceSettings, metrics: InferenceMetrics):  # noqa: ANN201
    """The model store's ``load`` callable: load, warm up, and attach a batcher."""
    policy = BatchPolicy(
        max_batch_size=settings.max_batch_size,
        max_latency=settings.max_latency_ms / 1000,
        queue_budget=settings.queue_budget_ms / 1000,
        max_queue_rows=settings.max_queue_rows,
    )

    def load(name: str, version: int, directory: Path) -> ServedVersion:
        started = time.perf_counter()
        servable = Servable.load(name, version, directory)
        servable.warm_up(warm_up_sizes(settings.max_batch_size))
        # The full batch's time seeds the expected-wait estimate until real batches refine it.
        probe = time.perf_counter()
        servable.predict([spec.example(settings.max_batch_size) for spec in servable.inputs])
        batch_seconds = time.perf_counter() - probe
        labels = {"model": name, "version": str(version)}
        rows, requests, call = (
            metrics.batch_rows.labels(**labels),
            metrics.batch_requests.labels(**labels),
            metrics.model_call.labels(**labels),
        )

        def observe(batch_rows: int, batch_requests: int, seconds: float) -> None:
            rows.observe(batch_rows)
            requests.observe(batch_requests)
            call.observe(seconds)

        batcher = Batcher(
            servable.predict, policy, batch_seconds=batch_seconds,
            batch_rows=settings.max_batch_size, observe=observe,
        )
        metrics.load_seconds.labels(**labels).set(time.perf_counter() - started)
        return ServedVersion(servable, batcher)

    return load
