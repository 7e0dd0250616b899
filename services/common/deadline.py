"""Per-request time budgets carried between services in one header."""

from __future__ import annotations

import math

HEADER = "X-Request-Timeout"  # seconds (decimal) the caller will still wait for an answer


def timeout_from(value: str | None, default: float, cap: float) -> float:
    """The caller's budget when it gives a sane one, never above ``cap``; else ``default``."""
    if value:
        try:
            seconds = float(value)
        except ValueError:
            return default
        if math.isfinite(seconds) and seconds > 0:
            return min(seconds, cap)
    return min(default, cap)
