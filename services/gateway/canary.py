"""Weighted choice of a model version for requests that do not pin one (a canary split)."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Sequence


class Canary:
    """Picks a version with probability weight / total; lock-free, so threads need not queue.

    Random rather than round-robin: each worker would otherwise follow its own deterministic
    cycle, and the split stays exact only in the long run anyway.
    """

    def __init__(self, weights: Sequence[tuple[str, int]], rand: Callable[[], float] = random.random):
        live = [(version, weight) for version, weight in weights if weight > 0]
        if not live:
            raise ValueError("a canary needs at least one version with a weight above 0")
        self.weights = dict(weights)
        self._versions = [version for version, _ in live]
        self._bounds = list(itertools.accumulate(weight for _, weight in live))
        self._total = self._bounds[-1]
        self._rand = rand

    def choose(self) -> str:
        index = bisect.bisect_right(self._bounds, self._rand() * self._total)
        return self._versions[min(index, len(self._versions) - 1)]  # float rounding at the top
