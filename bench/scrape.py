"""Read the inference service's own counters: what batch size did adaptive batching achieve?

The service exports ``modelserver_batch_size`` (rows per model call) and
``modelserver_model_call_seconds`` (time per call) as Prometheus histograms; the harness reads
their ``_sum``/``_count`` before and after each load run and divides the differences.
"""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from dataclasses import dataclass

_SAMPLE = re.compile(r'^(modelserver_(?:batch_size|model_call_seconds)_(?:sum|count))\{([^}]*)\} (\S+)$')


@dataclass(frozen=True)
class BatchCounters:
    rows: float = 0.0
    calls: float = 0.0
    call_seconds: float = 0.0

    def __sub__(self, before: BatchCounters) -> BatchCounters:
        return BatchCounters(self.rows - before.rows, self.calls - before.calls,
                             self.call_seconds - before.call_seconds)

    def __add__(self, other: BatchCounters) -> BatchCounters:
        return BatchCounters(self.rows + other.rows, self.calls + other.calls,
                             self.call_seconds + other.call_seconds)

    @property
    def mean_batch(self) -> float | None:
        return self.rows / self.calls if self.calls else None

    @property
    def mean_call_ms(self) -> float | None:
        return 1000 * self.call_seconds / self.calls if self.calls else None


def parse(text: str, model: str) -> BatchCounters:
    """Sum the counters of every version of ``model`` in a Prometheus text exposition."""
    totals: Counter[str] = Counter()
    label = f'model="{model}"'
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and label in match.group(2).split(","):
            totals[match.group(1)] += float(match.group(3))
    return BatchCounters(
        rows=totals["modelserver_batch_size_sum"],
        calls=totals["modelserver_batch_size_count"],
        call_seconds=totals["modelserver_model_call_seconds_sum"],
    )


def read(urls: list[str], model: str) -> BatchCounters:
    """Counters summed over every ``/metrics`` URL (one per inference replica)."""
    total = BatchCounters()
    for url in urls:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            total = total + parse(response.read().decode(), model)
    return total
