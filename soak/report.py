"""The soak report: JSON for machines, Markdown for people. The memory trend is the slope of a
least-squares line through each process's RSS after the warm-up (MiB per minute); a leak shows
as a steady positive slope, noise as one near zero that changes sign between runs."""

from __future__ import annotations

import math
from collections import Counter


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else float("nan")


def build(seconds: float, requests: Counter, outcomes: Counter, windows: dict[int, list[float]],
          window: float, memory: list[tuple[float, dict[str, float]]], upgrades: list[tuple[float, int]],
          warmup: float) -> dict:
    series: dict[str, list[tuple[float, float]]] = {}
    for t, rss in memory:
        for process, mib in rss.items():
            series.setdefault(process, []).append((t, mib))
    trend = {p: {"start_mib": round(pts[0][1], 1), "end_mib": round(pts[-1][1], 1),
                 "max_mib": round(max(v for _, v in pts), 1),
                 "slope_mib_per_min": round(slope_per_minute([x for x in pts if x[0] >= warmup]), 3)}
             for p, pts in sorted(series.items())}
    errors = {k: v for k, v in outcomes.items() if k.startswith("error")}
    return {
        "seconds": round(seconds, 1),
        "requests": sum(requests.values()), "by_kind": dict(requests), "outcomes": dict(outcomes),
        "errors": sum(errors.values()), "errors_by_kind": errors,
        "rate_per_second": round(sum(requests.values()) / seconds, 1) if seconds else 0,
        "p99_ms_over_time": [{"from_s": int(w * window), "served": len(v), "p99_ms": round(1000 * p99(v), 1)}
                             for w, v in sorted(windows.items())],
        "upgrades": [{"at_s": round(t, 1), "version": v} for t, v in upgrades],
        "memory": trend,
        "memory_samples": [{"at_s": round(t, 1), **{k: round(v, 1) for k, v in rss.items()}} for t, rss in memory],
        "max_rss_slope_mib_per_min": max((m["slope_mib_per_min"] for m in trend.values()), default=0.0),
        "warmup_s": warmup,
    }


def markdown(report: dict) -> str:
    lines = [
        f"# Soak report: {report['seconds']:.0f} s",
        "",
        f"- requests: {report['requests']} ({report['rate_per_second']}/s), by kind: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report["by_kind"].items())),
        "- outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items())),
        f"- errors of the stack: {report['errors']}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in report["errors_by_kind"].items()) + ")" if report["errors"] else ""
        ),
        f"- model upgrades: {len(report['upgrades'])}"
        + (f" (to version {report['upgrades'][-1]['version']})" if report["upgrades"] else ""),
        f"- largest RSS slope after {report['warmup_s']:.0f} s of warm-up: "
        f"{report['max_rss_slope_mib_per_min']:+.3f} MiB/min",
        "",
        "## Memory per process (RSS, MiB)",
        "",
        "| process | start | end | max | slope MiB/min |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {p} | {m['start_mib']} | {m['end_mib']} | {m['max_mib']} | {m['slope_mib_per_min']:+.3f} |"
            for p, m in report["memory"].items()
        ),
        "",
        "## p99 of served predictions over time",
        "",
        "| from s | served | p99 ms |",
        "|---:|---:|---:|",
        *(f"| {w['from_s']} | {w['served']} | {w['p99_ms']} |" for w in report["p99_ms_over_time"]),
        "",
    ]
    return "\n".join(lines)
