"""One benchmark run: build, measure the raw limit, start every target, then load them in rounds.

Rounds interleave the targets (round 1: every target at every concurrency, round 2: again...)
so that a burst of noise from elsewhere on a shared machine hits all of them alike rather than
one target's whole series; each point's figures are the medians over the rounds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import cpu, loadgen, overload, perf_analyzer, scrape, workload
from bench.models import DIGITS, DIGITS_SAVEDMODEL, MODELS, BenchModel
from bench.targets import TARGETS, Running, Start, Target, compare_target, inference_target, settle
from bench.workload import TFS, Request
from tests.support.servers import REPO


@dataclass(frozen=True)
class Plan:
    out: Path = REPO / "reports"
    work: Path = REPO / ".cache" / "bench"
    targets: tuple[str, ...] = ("naive", "tuned", "inference", "inference-v2", "gateway", "stack")
    models: tuple[str, ...] = ("digits", "cnn")
    concurrency: tuple[int, ...] = (1, 8, 32, 64)
    repetitions: int = 3
    seconds: float = 3.0  # per point and repetition
    warmup_seconds: float = 1.0
    raw_batches: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    raw_seconds: float = 0.4  # per batch size, once in each round of the run
    raw_rounds: int = 1
    overload_concurrency: int = 256
    overload_seconds: float = 5.0
    overload_model: str = "cnn"
    stack_overload_seconds: float = 20.0  # twice the stack's capacity, open loop (bench.overload)
    wrk_cpus: str | None = None  # e.g. "1": pin wrk to a CPU with taskset
    compare_to: Path | None = None  # another checkout: its inference service joins the run
    workers: int | None = None  # worker processes of every server; None: each one's default
    # Triton's perf_analyzer against the inference service: its concurrency range
    # (start:end:step) and measurement window; "" skips it.
    perf_analyzer_concurrency: str = "1:9:4"
    perf_analyzer_interval_ms: int = 2000
    # gRPC beside HTTP, by perf_analyzer on both models: V2 over HTTP (binary), V2 over gRPC (raw
    # contents) and TF Serving's Predict over gRPC, at these concurrencies; "" skips it.
    grpc_concurrency: str = "1:32:31"
    # The digits model as .keras and as a SavedModel, side by side in one inference service, at
    # these concurrencies (same rounds and seconds as the servers); () skips it.
    formats_concurrency: tuple[int, ...] = (1, 32)

    def chosen_targets(self) -> dict[str, Target]:
        chosen = {key: TARGETS[key] for key in self.targets}
        if self.compare_to:
            chosen["compare"] = compare_target(self.compare_to)
        return chosen


@dataclass
class Point:
    """One target x model x concurrency: medians over the repetitions."""

    target: str
    model: str
    concurrency: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int  # summed over repetitions
    batch: float | None  # achieved rows per model call, from the service's /metrics
    cpu_ms: float | None  # server CPU time (all its processes) per answered request
    repetitions: int


@dataclass
class Overload:
    target: str
    model: str
    concurrency: int
    result: loadgen.LoadResult
    batch: scrape.BatchCounters
    budget_ms: float

    @property
    def served(self) -> int:
        return self.result.statuses.get(200, 0)

    @property
    def served_p99_ms(self) -> float:
        """p99 of the 200s alone: measured when the server echoed the send times, else bounded."""
        return self.result.served_ms.get("99", self.served_p99_bound_ms)

    @property
    def served_p99_bound_ms(self) -> float:
        """An upper bound on the p99 of the 200s alone, from wrk's histogram of all answers.

        If a fraction s of the answers were 200s, their p99 is at most the overall percentile
        100 - s (99 when all were served): refusals can only push served requests up the order.
        The next percentile wrk reported at or above that is used, so the bound stays a bound.
        """
        total = self.result.requests
        if not total or not self.served:
            return float("nan")
        needed = 100 - self.served / total  # percent
        at = min((p for p in self.result.latency_ms if p >= needed), default=max(self.result.latency_ms))
        return self.result.latency_ms[at]


@dataclass
class Results:
    plan: Plan
    raw: dict[str, dict] = field(default_factory=dict)  # model -> bench.raw's JSON
    points: list[Point] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why
    titles: dict[str, str] = field(default_factory=dict)  # target key -> title, in run order
    overloads: list[Overload] = field(default_factory=list)  # inference first, then --compare-to
    stack_overload: dict | None = None  # bench.overload's summary of the stack at 2x capacity
    perf_analyzer: list[perf_analyzer.Row] = field(default_factory=list)  # digits, direct
    perf_analyzer_skipped: str = ""
    # (model, perf_analyzer protocol) -> its rows: gRPC beside HTTP
    grpc: dict[tuple[str, str], list[perf_analyzer.Row]] = field(default_factory=dict)
    grpc_skipped: str = ""
    formats: list[Point] = field(default_factory=list)  # target "keras" or "savedmodel", digits
    formats_skipped: str = ""
    seconds: float = 0.0
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and end

    @property
    def overload(self) -> Overload | None:
        """The overload run of this checkout's inference service, if there was one."""
        return next((o for o in self.overloads if o.target == "inference"), None)

    def point(self, target: str, model: str, concurrency: int) -> Point | None:
        return next((p for p in self.points
                     if (p.target, p.model, p.concurrency) == (target, model, concurrency)), None)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _python(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


@dataclass(frozen=True)
class Measured:
    load: loadgen.LoadResult
    batch: scrape.BatchCounters
    cpu_ms: float | None  # per answered request


def _load(plan: Plan, running: Running, model: str, request: Request, connections: int, seconds: float,
          count_statuses: bool = False) -> Measured:
    # Requests abandoned by the previous run may still sit in a sync server's listen queue:
    # one answered request (served after them) means the server is idle again.
    settle(running.url, request)
    before = scrape.read(running.metrics_urls, model)
    cpu_before = cpu.tree_seconds(running.pid) if running.pid else None
    result = loadgen.run_wrk(running.url, request, connections=connections, seconds=seconds,
                             count_statuses=count_statuses, cpus=plan.wrk_cpus)
    cpu_ms = None
    if cpu_before is not None and result.requests:
        cpu_ms = 1000 * (cpu.tree_seconds(running.pid) - cpu_before) / result.requests
    return Measured(result, scrape.read(running.metrics_urls, model) - before, cpu_ms)


def _raw_limit(plan: Plan, model: BenchModel, model_root: Path) -> dict:
    log(f"raw model limit: {model.name}")
    return json.loads(_python(
        "-m", "bench.raw", str(model.version_dir(model_root) / "model.keras"),
        "--batches", ",".join(map(str, plan.raw_batches)), "--seconds", str(plan.raw_seconds),
        "--rounds", str(plan.raw_rounds)))


def _median_raw(runs: list[dict]) -> dict:
    """One raw limit from several measurements: per batch size, the median samples/s."""
    rates = {b: statistics.median(r["samples_per_second"][b] for r in runs) for b in runs[0]["samples_per_second"]}
    best = max(rates, key=rates.__getitem__)
    single = [r["single_call_ms"] for r in runs if r["single_call_ms"] is not None]
    return {"samples_per_second": rates, "best_batch": int(best), "best_samples_per_second": rates[best],
            "single_call_ms": statistics.median(single) if single else None, "measurements": len(runs)}


def _start(stack: ExitStack, targets: dict[str, Target], start: Start, results: Results) -> dict[str, Running]:
    """Start every target that can run; the others are recorded in ``results.skipped``."""
    running: dict[str, Running] = {}
    for key, target in targets.items():
        reason = target.skip()
        if not reason:
            log(f"starting {key}")
            try:
                running[key] = stack.enter_context(target.start(start))
                continue
            except (RuntimeError, TimeoutError) as error:
                reason = f"failed to start: {str(error).strip().splitlines()[-1][:200]} (log in {start.logs})"
        results.skipped[key] = reason
        log(f"{key}: {reason}")
    return running


def _rounds(plan: Plan, running: dict[str, tuple[Running, dict[str, Request]]],
            raw: Callable[[], None]) -> list[Point]:
    samples: dict[tuple[str, str, int], list[Measured]] = {}
    for rep in range(plan.repetitions):
        raw()  # the raw limit is part of every round: it sees the same machine as the servers
        for key, (target, requests) in running.items():
            for model, request in requests.items():
                if rep == 0 and plan.warmup_seconds:
                    loadgen.run_wrk(target.url, request, connections=8, seconds=plan.warmup_seconds)
                for c in plan.concurrency:
                    measured = _load(plan, target, model, request, c, plan.seconds)
                    samples.setdefault((key, model, c), []).append(measured)
                    m = measured.load
                    log(f"round {rep + 1}/{plan.repetitions} {key:9} {model:6} c={c:<3} "
                        f"{m.rate:8.1f} req/s  p50 {m.p50_ms:7.2f} ms  p99 {m.p99_ms:7.2f} ms  "
                        f"errors {m.errors}  cpu/req {measured.cpu_ms or 0:.2f} ms")
    points = []
    for (key, model, c), runs in samples.items():
        counters = sum((r.batch for r in runs), scrape.BatchCounters())
        cpu_ms = [r.cpu_ms for r in runs if r.cpu_ms is not None]
        points.append(Point(
            key, model, c,
            rate=statistics.median(r.load.rate for r in runs),
            p50_ms=statistics.median(r.load.p50_ms for r in runs),
            p99_ms=statistics.median(r.load.p99_ms for r in runs),
            errors=sum(r.load.errors for r in runs),
            batch=counters.mean_batch,
            cpu_ms=statistics.median(cpu_ms) if cpu_ms else None,
            repetitions=len(runs),
        ))
    return points


def _overload(plan: Plan, key: str, inference: Running, request: Request) -> Overload:
    from services.inference.config import load_settings

    log(f"overload: {key} {plan.overload_model} c={plan.overload_concurrency}")
    measured = _load(plan, inference, plan.overload_model, request, plan.overload_concurrency,
                     plan.overload_seconds, count_statuses=True)
    return Overload(key, plan.overload_model, plan.overload_concurrency, measured.load,
                    measured.batch, load_settings().queue_budget_ms)


def _stack_overload(plan: Plan, stack: Running, request: Request) -> dict | None:
    if not stack.concurrency:
        log("stack overload: skipped, the stack's in-flight cap is unknown (BENCH_STACK_URL)")
        return None
    log(f"stack overload: capacity at c={stack.concurrency}, then twice it for {plan.stack_overload_seconds:g} s")
    return overload.run(stack.url, request.body, '"predictions"', concurrency=stack.concurrency,
                        replicas=stack.metrics_urls, seconds=plan.stack_overload_seconds,
                        calibration_seconds=min(8.0, plan.stack_overload_seconds), path=request.path)


def _perf_analyzer(plan: Plan, inference: Running, results: Results) -> None:
    log(f"perf_analyzer: digits over HTTP, concurrency {plan.perf_analyzer_concurrency}")
    try:
        results.perf_analyzer = perf_analyzer.run(
            inference.url, "digits", plan.perf_analyzer_concurrency, plan.perf_analyzer_interval_ms,
            plan.out / "perf_analyzer.csv", timeout=600)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        results.perf_analyzer_skipped = str(error).strip().splitlines()[-1][:300]
        log(f"perf_analyzer: {results.perf_analyzer_skipped}")


def _grpc(plan: Plan, inference: Running, models: list[BenchModel], results: Results) -> None:
    """The same service over HTTP and gRPC, by one client (perf_analyzer), one model at a time."""
    if not inference.grpc:
        results.grpc_skipped = "the inference service runs no gRPC server"
        return
    for model in models:
        for protocol in perf_analyzer.PROTOCOLS:
            log(f"perf_analyzer: {model.name} over {protocol}, concurrency {plan.grpc_concurrency}")
            url = inference.url if protocol == "http" else inference.grpc
            shape = f"{model.input_name}:1," + ",".join(str(d) for d in model.input_shape)
            try:
                results.grpc[model.name, protocol] = perf_analyzer.run(
                    url, model.name, plan.grpc_concurrency, plan.perf_analyzer_interval_ms,
                    plan.out / f"perf_analyzer-{model.name}-{protocol}.csv", timeout=600,
                    protocol=protocol, shape=shape, zeros=True)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                reason = f"{model.name} over {protocol}: {str(error).strip().splitlines()[-1][:200]}"
                results.grpc_skipped = "; ".join(filter(None, (results.grpc_skipped, reason)))
                log(f"perf_analyzer: {reason}")


FORMAT_MODELS = {"keras": DIGITS, "savedmodel": DIGITS_SAVEDMODEL}


def _formats(plan: Plan, stack: ExitStack, results: Results, logs: Path) -> None:
    """The same digits model as .keras and as a SavedModel, in one inference service: rounds
    alternate the two, as the servers' rounds alternate targets."""
    root = plan.work / "formats"
    log(f"formats: digits as .keras and as SavedModel under {root}")
    _python("-m", "bench.models", "--root", str(plan.work / "models"), "--formats-root", str(root))
    requests = workload.write(list(FORMAT_MODELS.values()), plan.work / "format-bodies")[TFS]
    start = Start(root, logs, {n: r.body.read_bytes() for n, r in requests.items()}, plan.workers)
    try:
        running = stack.enter_context(inference_target("formats").start(start))
    except (RuntimeError, TimeoutError) as error:
        results.formats_skipped = f"failed to start: {str(error).strip().splitlines()[-1][:200]}"
        log(f"formats: {results.formats_skipped}")
        return
    chosen = {key: (running, {model.name: requests[model.name]}) for key, model in FORMAT_MODELS.items()}
    results.formats = _rounds(dataclasses.replace(plan, concurrency=plan.formats_concurrency), chosen, lambda: None)


def _for(target: Target, requests: dict[str, dict[str, Request]]) -> dict[str, Request]:
    """The requests ``target`` is measured with: its protocol, its models."""
    chosen = requests[target.protocol]
    return {m: r for m, r in chosen.items() if target.models is None or m in target.models}


def run(plan: Plan) -> Results:
    started = time.monotonic()
    targets = plan.chosen_targets()
    results = Results(plan, titles={key: t.title for key, t in targets.items()})
    load_before = os.getloadavg()[0]
    models = [m for m in MODELS if m.name in plan.models]
    model_root = plan.work / "models"
    log(f"building the benchmark models under {model_root}")
    _python("-m", "bench.models", "--root", str(model_root))
    raw_runs: dict[str, list[dict]] = {m.name: [] for m in models}

    def measure_raw() -> None:
        for model in models:
            raw_runs[model.name].append(_raw_limit(plan, model, model_root))
    requests = workload.write(models, plan.work / "bodies")
    logs = plan.out / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = Start(model_root, logs, {n: r.body.read_bytes() for n, r in requests[TFS].items()}, plan.workers)
    with ExitStack() as stack:
        running = _start(stack, targets, start, results)
        results.points = _rounds(plan, {k: (r, _for(targets[k], requests)) for k, r in running.items()},
                                 measure_raw)
        results.raw = {name: _median_raw(runs) for name, runs in raw_runs.items() if runs}
        if plan.overload_seconds and plan.overload_model in requests[TFS]:
            results.overloads = [_overload(plan, key, running[key], requests[TFS][plan.overload_model])
                                 for key in ("inference", "compare") if key in running]
        if plan.perf_analyzer_concurrency and "inference" in running:
            _perf_analyzer(plan, running["inference"], results)
        if plan.grpc_concurrency and "inference" in running:
            _grpc(plan, running["inference"], models, results)
        if plan.stack_overload_seconds and "stack" in running:
            results.stack_overload = _stack_overload(plan, running["stack"], requests[TFS]["digits"])
    if plan.formats_concurrency:
        with ExitStack() as stack:  # after the other servers have stopped: the CPUs are its own
            _formats(plan, stack, results, logs)
    results.seconds = time.monotonic() - started
    results.load_average = (load_before, os.getloadavg()[0])
    return results
