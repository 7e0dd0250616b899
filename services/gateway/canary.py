"""Weighted choice of a model version, or a version label, for requests that pin neither (a
canary split)."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Sequence

from services.common import naturals
from services.common.errors import NotFound
from services.protocol.facts import VERSION_LABEL


class Canary:
    """Picks a version with probability weight / total; lock-free, so threads need not queue.

    Random rather than round-robin: each worker would otherwise follow its own deterministic
    cycle, and the split stays exact only in the long run anyway.
    """

    def __init__(
        self, weights: Sequence[tuple[str, int]], rand: Callable[[], float] = random.random, *,
        by: str = "version",
    ):
        live = [(version, weight) for version, weight in weights if weight > 0]
        if not live:
            raise ValueError("a canary needs at least one version with a weight above 0")
        self.by = by  # "version" or "label": what the weights' keys are
        self.weights = dict(weights)
        self._versions = [version for version, _ in live]
        self._bounds = list(itertools.accumulate(weight for _, weight in live))
        self._total = self._bounds[-1]
        self._rand = rand

    def choose(self) -> str:
        index = bisect.bisect_right(self._bounds, self._rand() * self._total)
        return self._versions[min(index, len(self._versions) - 1)]  # float rounding at the top


def pinned_or_chosen(
    model: str, canary: Canary | None, version: str | None, label: str | None, *,
    inference: bool, labels: bool,
) -> tuple[str | None, str | None]:
    """The (version, label) a call goes to: what it pins, checked (else :class:`NotFound`), or for a
    prediction that pins nothing the canary's pick. ``labels``: the protocol has version labels
    (TF Serving's; the Open Inference Protocol has none, so a label canary leaves its calls to the
    default version). One rule for HTTP and gRPC."""
    if version is not None:
        if naturals.parse(version) is None:
            raise NotFound(f"model '{model}' version '{version[:40]}' not found: versions are integers")
    elif label is not None:
        if not VERSION_LABEL.fullmatch(label):
            raise NotFound(f"model '{model}' has no version label '{label[:64]}'")
    elif inference and canary is not None:
        if canary.by == "version":
            version = canary.choose()
        elif labels:
            label = canary.choose()
    return version, label
