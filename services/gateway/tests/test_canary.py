"""The weighted version choice."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.gateway.canary import Canary


def test_the_split_follows_the_weights():
    rng = random.Random(7)
    canary = Canary([("1", 90), ("2", 10)], rand=rng.random)
    counts = Counter(canary.choose() for _ in range(100_000))
    assert abs(counts["2"] / 100_000 - 0.10) < 0.005
    assert set(counts) == {"1", "2"}


def test_a_zero_weight_is_never_chosen_and_the_edges_are_exact():
    draws = iter([0.0, 0.4999, 0.5, 0.9999999999999999])
    canary = Canary([("1", 1), ("2", 0), ("3", 1)], rand=lambda: next(draws))
    assert [canary.choose() for _ in range(4)] == ["1", "1", "3", "3"]
    assert canary.weights == {"1": 1, "2": 0, "3": 1}


def test_all_zero_is_not_a_canary():
    with pytest.raises(ValueError):
        Canary([("1", 0)])
