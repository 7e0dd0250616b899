"""The report of one run: a markdown table with ratios, the issue's targets checked, and a plot."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from bench import overload, perf_analyzer
from bench.runner import Results


@dataclass(frozen=True)
class Check:
    name: str
    met: bool | None  # None: could not be measured in this run
    detail: str


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _ms(seconds: float | None) -> str:
    return _fmt(None if seconds is None else seconds * 1000, 1)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def checks(results: Results) -> list[Check]:
    """The targets of issue 3 that one run can decide."""
    out: list[Check] = []
    inference, tuned, naive = (results.point(t, "digits", 32) for t in ("inference", "tuned", "naive"))
    if inference and tuned and naive:
        vs_tuned, vs_naive = inference.rate / tuned.rate, inference.rate / naive.rate
        out.append(Check("digits, c=32: inference >= 1.0x tuned Flask", vs_tuned >= 1.0, f"{vs_tuned:.2f}x"))
        out.append(Check("digits, c=32: inference >= 50x naive", vs_naive >= 50, f"{vs_naive:.0f}x"))
    else:
        out.append(Check("digits, c=32 vs tuned and naive", None, "needs digits at c=32 on all three"))
    for key in ("inference", "inference-v2"):
        cnn = [p for p in results.points if p.target == key and p.model == "cnn"]
        if cnn and "cnn" in results.raw:
            best = max(cnn, key=lambda p: p.rate)
            limit = results.raw["cnn"]["best_samples_per_second"]
            out.append(Check(f"cnn at saturation: {results.titles[key]} >= 0.8x raw limit",
                             best.rate / limit >= 0.8,
                             f"{best.rate:,.0f} req/s of one sample at c={best.concurrency} "
                             f"= {best.rate / limit:.2f}x of {limit:,.0f} samples/s"))
    for model, raw in results.raw.items():
        point = results.point("inference", model, 1)
        if point and raw.get("single_call_ms"):
            bound = raw["single_call_ms"] + 1
            out.append(Check(f"{model}, c=1: p50 <= raw single call + 1 ms", point.p50_ms <= bound,
                             f"p50 {point.p50_ms:.2f} ms vs {raw['single_call_ms']:.2f} + 1 ms"))
    direct = [p for p in results.points if p.target == "inference" and p.model == "digits"]
    for key in ("gateway", "stack"):
        hop = [p for p in results.points if p.target == key and p.model == "digits"]
        one, direct_one = results.point(key, "digits", 1), results.point("inference", "digits", 1)
        if not hop or not direct or not one or not direct_one:
            continue
        added = one.p50_ms - direct_one.p50_ms
        best, best_direct = max(p.rate for p in hop), max(p.rate for p in direct)
        if key == "gateway":
            out.append(Check("gateway hop, digits c=1: adds <= 1 ms at p50", added <= 1.0,
                             f"p50 {one.p50_ms:.2f} vs {direct_one.p50_ms:.2f} ms direct: +{added:.2f} ms"))
            out.append(Check("gateway hop at saturation: >= 0.8x direct throughput", best / best_direct >= 0.8,
                             f"{best:,.0f} vs {best_direct:,.0f} req/s = {best / best_direct:.2f}x"))
        else:
            out.append(Check("whole path (nginx + gateway), digits: cost against direct", None,
                             f"c=1 p50 +{added:.2f} ms; saturation {best:,.0f} vs {best_direct:,.0f} req/s "
                             f"= {best / best_direct:.2f}x (no target set; informational)"))
    if results.overload:
        o = results.overload
        bad = {s: n for s, n in o.result.statuses.items() if s >= 500 and s != 503}
        batch_ms = o.batch.mean_call_ms or 0.0
        bound = o.budget_ms + batch_ms
        p99 = o.served_p99_ms
        ok = not bad and o.result.socket_errors == 0 and o.served > 0 and p99 <= bound
        out.append(Check(
            f"overload, {o.model} c={o.concurrency}: only 503s, served p99 <= budget + one batch", ok,
            f"statuses {dict(sorted(o.result.statuses.items()))}, socket errors {o.result.socket_errors}, "
            f"served p99 {p99:.0f} ms vs {o.budget_ms:.0f} + {batch_ms:.0f} ms"))
    if results.stack_overload:
        out += [Check(f"stack at 2x capacity: {p.name}", p.met, p.detail)
                for p in overload.promises(results.stack_overload)]
    return out


def table(results: Results) -> str:
    head = ("| target | model | conc. | req/s | p50 ms | p99 ms | errors | batch | CPU ms/req | × raw | × naive "
            "| × (3) |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    rows = [head]
    order = {k: i for i, k in enumerate(results.titles)}
    for p in sorted(results.points, key=lambda p: (p.model != "digits", p.model, order[p.target], p.concurrency)):
        limit = results.raw.get(p.model, {}).get("best_samples_per_second")
        naive = results.point("naive", p.model, p.concurrency)
        direct = results.point("inference", p.model, p.concurrency) if p.target != "inference" else None
        rows.append(
            f"| {results.titles[p.target]} | {p.model} | {p.concurrency} | {_fmt(p.rate, 0)} | "
            f"{_fmt(p.p50_ms, 2)} | {_fmt(p.p99_ms, 1)} | {p.errors} | {_fmt(p.batch, 1)} | {_fmt(p.cpu_ms, 2)} | "
            f"{_fmt(_ratio(p.rate, limit), 3)} | {_fmt(_ratio(p.rate, naive.rate if naive else None), 1)} | "
            f"{_fmt(_ratio(p.rate, direct.rate if direct else None), 2)} |")
    return "\n".join(rows)


def formats_table(results: Results) -> str:
    """The digits model as .keras and as a SavedModel, per concurrency, side by side."""
    rows = ["| conc. | .keras req/s | SavedModel req/s | SavedModel ÷ .keras | p50 ms (.keras / SM) "
            "| p99 ms (.keras / SM) | CPU ms/req (.keras / SM) | batch (.keras / SM) | errors |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    by = {(p.target, p.concurrency): p for p in results.formats}
    for c in sorted({p.concurrency for p in results.formats}):
        k, m = by.get(("keras", c)), by.get(("savedmodel", c))
        if k is None or m is None:
            continue
        rows.append(
            f"| {c} | {_fmt(k.rate, 0)} | {_fmt(m.rate, 0)} | {_fmt(_ratio(m.rate, k.rate), 2)} | "
            f"{_fmt(k.p50_ms, 2)} / {_fmt(m.p50_ms, 2)} | {_fmt(k.p99_ms, 1)} / {_fmt(m.p99_ms, 1)} | "
            f"{_fmt(k.cpu_ms, 2)} / {_fmt(m.cpu_ms, 2)} | {_fmt(k.batch, 1)} / {_fmt(m.batch, 1)} | "
            f"{k.errors + m.errors} |")
    return "\n".join(rows)


def raw_table(results: Results) -> str:
    rows = ["| model | (1) raw limit, samples/s | at batch | single call ms | samples/s by batch |",
            "|---|--:|--:|--:|---|"]
    for model, raw in results.raw.items():
        by_batch = ", ".join(f"{b}: {float(r):,.0f}" for b, r in raw["samples_per_second"].items())
        rows.append(f"| {model} | {raw['best_samples_per_second']:,.0f} | {raw['best_batch']} | "
                    f"{_fmt(raw['single_call_ms'], 2)} | {by_batch} |")
    return "\n".join(rows)


def markdown(results: Results, plot_name: str | None) -> str:
    plan = results.plan
    lines = [
        "# Benchmark", "",
        f"{time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'}, "
        f"{len(os.sched_getaffinity(0))} CPUs; {results.seconds:.0f} s in all. "
        f"{plan.repetitions} round(s) of {plan.seconds:g} s per point, targets interleaved; "
        "figures are medians over the rounds (errors: summed). One wrk thread, keep-alive "
        "connections, one sample per request in TF Serving's row format (the V2 binary target: "
        "the same sample as a binary tensor). The raw limit is measured in every round too, "
        "between the servers, and is the median per batch size. 1-minute load average "
        f"{results.load_average[0]:.1f} before, {results.load_average[1]:.1f} after.", "",
        "## Raw model limit (1)", "", raw_table(results), "",
        "## Servers", "", table(results), "",
        "*× raw*: req/s ÷ the raw limit in samples/s (each request is one sample). *× naive*: "
        "req/s ÷ the naive server's at the same model and concurrency. *× (3)*: req/s ÷ the "
        "inference service's, direct, at the same model and concurrency. *batch*: rows per model "
        "call, read from the service's `/metrics`. *CPU ms/req*: CPU time of all the server's "
        "processes per answered request, which noise from other work on the machine moves far less "
        "than req/s.", "",
    ]
    if results.skipped:
        lines += ["Not measured:", ""] + [f"- {results.titles[k]}: {why}" for k, why in results.skipped.items()]
        lines.append("")
    if results.overloads or results.stack_overload:
        lines += ["## Overload", ""]
        for o in results.overloads:
            lines += [f"{results.titles[o.target]}, {o.model}, {o.concurrency} connections for "
                      f"{plan.overload_seconds:g} s: {o.result.rate:,.0f} answers/s, statuses "
                      f"{dict(sorted(o.result.statuses.items()))}, socket errors {o.result.socket_errors}; "
                      f"p50 {o.result.p50_ms:.1f} ms of all answers; p99 of the served ones "
                      f"{o.served_p99_ms:.0f} ms; admission budget {o.budget_ms:.0f} ms; mean batch "
                      f"{_fmt(o.batch.mean_batch)} rows taking {_fmt(o.batch.mean_call_ms)} ms.", ""]
    if results.stack_overload:
        s = results.stack_overload
        lines += [f"{results.titles['stack']}, open loop at twice the capacity measured just before "
                  f"({s['capacity']:,.0f} req/s, closed loop at the stack's in-flight cap) for {s['seconds']:g} s: "
                  f"sent {s['sent_rate']:,.0f}/s, served {s['served_rate']:,.0f}/s, shed {s['shed_rate']:,.0f}/s, "
                  f"statuses {s['statuses']}; from the send, served p50/p99 "
                  f"{_ms(s['served_service_p50'])}/{_ms(s['served_service_p99'])} ms, shed p50/p99 "
                  f"{_ms(s['shed_service_p50'])}/{_ms(s['shed_service_p99'])} ms (the promises: Targets).", ""]
    if results.perf_analyzer or results.perf_analyzer_skipped:
        lines += ["## Triton's perf_analyzer", "",
                  f"`perf_analyzer -m digits -i http --concurrency-range {plan.perf_analyzer_concurrency} "
                  f"--measurement-interval {plan.perf_analyzer_interval_ms}` against the inference service "
                  "(3), direct: V2 requests of one sample, binary tensors; server queue and compute from "
                  "the statistics extension. Its CSV: perf_analyzer.csv.", ""]
        lines += [perf_analyzer.table(results.perf_analyzer) if results.perf_analyzer
                  else f"Not measured: {results.perf_analyzer_skipped}", ""]
    if results.grpc or results.grpc_skipped:
        lines += ["## gRPC beside HTTP", "",
                  f"perf_analyzer against the inference service (3), direct, `--concurrency-range "
                  f"{plan.grpc_concurrency}`: V2 over HTTP with binary tensors (`-i http`), V2 `ModelInfer` "
                  "with raw contents (`-i grpc`) and TF Serving's `Predict` (`-i grpc --service-kind "
                  "tfserving`), one sample of zeros per request. A gRPC client's calls share one HTTP/2 connection, "
                  "which the kernel gives to one worker: perf_analyzer's tfserving client opens one, its V2 "
                  "client several. CSVs: perf_analyzer-<model>-<protocol>.csv.", ""]
        lines += [perf_analyzer.protocols_table(results.grpc) if results.grpc
                  else f"Not measured: {results.grpc_skipped}", ""]
        if results.grpc and results.grpc_skipped:
            lines += [f"Partly measured: {results.grpc_skipped}", ""]
    if results.formats or results.formats_skipped:
        lines += ["## SavedModel vs .keras", "",
                  "The trained digits model twice in one inference service (3): its `model.keras` and "
                  "the SavedModel Keras 3's `model.export()` writes of it, the same TF Serving request, "
                  f"rounds alternating the two as above ({plan.repetitions} of {plan.seconds:g} s), "
                  "after the other servers have stopped.", ""]
        lines += [formats_table(results) if results.formats else f"Not measured: {results.formats_skipped}", ""]
    lines += ["## Targets", ""]
    for check in checks(results):
        mark = {True: "met", False: "**not met**", None: "not measured"}[check.met]
        lines.append(f"- {check.name}: {mark} ({check.detail})")
    if plot_name:
        lines += ["", f"![throughput and p99 against concurrency]({plot_name})"]
    return "\n".join(lines) + "\n"


def plot(results: Results, path: Path) -> None:
    """Throughput and p99 against concurrency, one column per model, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    models = [m for m in results.plan.models if any(p.model == m for p in results.points)]
    fig, axes = plt.subplots(2, max(1, len(models)), figsize=(6 * max(1, len(models)), 8), squeeze=False)
    for column, model in enumerate(models):
        rate_ax, p99_ax = axes[0][column], axes[1][column]
        for key, title in results.titles.items():
            points = sorted((p for p in results.points if p.target == key and p.model == model),
                            key=lambda p: p.concurrency)
            if not points:
                continue
            answered = [p for p in points if p.rate > 0]  # a log axis has no zero
            x = [p.concurrency for p in answered]
            rate_ax.plot(x, [p.rate for p in answered], marker="o", label=title)
            p99_ax.plot(x, [p.p99_ms for p in answered], marker="o", label=title)
        limit = results.raw.get(model, {}).get("best_samples_per_second")
        if limit:
            rate_ax.axhline(limit, linestyle="--", color="grey", label="(1) raw model limit")
        rate_ax.set(title=f"{model}: throughput", xscale="log", yscale="log", ylabel="requests/s")
        p99_ax.set(title=f"{model}: p99 latency", xscale="log", yscale="log", ylabel="ms",
                   xlabel="concurrent connections")
        for ax in (rate_ax, p99_ax):
            ax.set_xticks(results.plan.concurrency, [str(c) for c in results.plan.concurrency])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="both", alpha=0.3)
        rate_ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: Results) -> tuple[Path, Path]:
    """Write reports/bench.md and reports/bench.png; returns both paths."""
    out = results.plan.out
    out.mkdir(parents=True, exist_ok=True)
    png, md = out / "bench.png", out / "bench.md"
    plot(results, png)
    md.write_text(markdown(results, png.name))
    return md, png
