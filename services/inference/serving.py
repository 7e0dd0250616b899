"""A model version ready for requests: the loaded model plus its batchers and metric handles.

One batcher per signature: a batch is one call of one signature, so it only ever merges
requests for the same signature.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import ClientError
from services.inference import statistics
from services.inference.batching import DEFAULT_BATCH_SECONDS, Batcher, BatchPolicy
from services.inference.config import InferenceSettings
from services.inference.metrics import InferenceMetrics
from services.inference.servable import DEFAULT_SIGNATURE, Servable, Signature


@dataclass(frozen=True)
class ServedVersion:
    servable: Servable
    batchers: Mapping[str, Batcher]  # by signature name

    @property
    def batcher(self) -> Batcher:
        """The default signature's."""
        return self.batchers[DEFAULT_SIGNATURE]

    def batcher_for(self, signature: Signature) -> Batcher:
        return self.batchers[signature.name]

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
        labels = {"model": name, "version": str(version)}
        rows, requests, call, queue_wait = (
            metrics.batch_rows.labels(**labels),
            metrics.batch_requests.labels(**labels),
            metrics.model_call.labels(**labels),
            metrics.queue_wait.labels(**labels),
        )

        def observe(batch_rows: int, batch_requests: int, seconds: float, waits: list[float]) -> None:
            rows.observe(batch_rows)
            requests.observe(batch_requests)
            call.observe(seconds)
            for wait in waits:
                queue_wait.observe(wait)
            statistics.record_execution(
                metrics, name, str(version), batch_rows, seconds, settings.max_batch_size
            )

        batchers = {
            name: Batcher(
                signature.predict, policy, batch_seconds=full_batch_seconds(signature, settings.max_batch_size),
                batch_rows=settings.max_batch_size, observe=observe,
            )
            for name, signature in servable.signatures.items()
        }
        metrics.load_seconds.labels(**labels).set(time.perf_counter() - started)
        return ServedVersion(servable, batchers)

    return load


def full_batch_seconds(signature: Signature, rows: int) -> float:
    """One full batch's time, which seeds the expected-wait estimate until real batches refine
    it (a string signature that refuses empty strings: the batcher's own default)."""
    probe = time.perf_counter()
    try:
        signature.predict([spec.example(rows) for spec in signature.inputs])
    except ClientError:
        return DEFAULT_BATCH_SECONDS
    return time.perf_counter() - probe
