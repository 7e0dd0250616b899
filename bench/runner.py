"""One benchmark run: build, measure the raw limit, start every target, then load them in rounds.

Rounds interleave the targets (round 1: every target at every concurrency, round 2: again...)
so that a burst of noise from elsewhere on a shared machine hits all of them alike rather than
one target's whole series; each point's figures are the medians over the rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import cpu, loadgen, scrape
from bench.models import MODELS, BenchModel
from bench.targets import TARGETS, Running, Start, Target, compare_target, settle
from tests.support.servers import REPO


@dataclass(frozen=True)
class Plan:
    out: Path = REPO / "reports"
    work: Path = REPO / ".cache" / "bench"
    targets: tuple[str, ...] = ("naive", "tuned", "inference", "stack")
    models: tuple[str, ...] = ("digits", "cnn")
    concurrency: tuple[int, ...] = (1, 8, 32, 64)
    repetitions: int = 3
    seconds: float = 3.0  # per point and repetition
    warmup_seconds: float = 1.0
    raw_batches: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    raw_seconds: float = 1.0  # per batch size
    overload_concurrency: int = 256
    overload_seconds: float = 5.0
    overload_model: str = "cnn"
    wrk_cpus: str | None = None  # e.g. "1": pin wrk to a CPU with taskset
    compare_to: Path | None = None  # another checkout: its inference service joins the run
    workers: int | None = None  # worker processes of every server; None: each one's default

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


def write_bodies(models: list[BenchModel], directory: Path) -> dict[str, Path]:
    """One request per model: a single sample in TF Serving's row format (fixed seed)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bodies = {}
    for model in models:
        sample = np.round(rng.random((1, *model.input_shape)), 3).tolist()
        bodies[model.name] = directory / f"{model.name}.json"
        bodies[model.name].write_text(json.dumps({"instances": sample}))
    return bodies


@dataclass(frozen=True)
class Measured:
    load: loadgen.LoadResult
    batch: scrape.BatchCounters
    cpu_ms: float | None  # per answered request


def _load(plan: Plan, running: Running, model: str, body: Path, connections: int, seconds: float,
          count_statuses: bool = False) -> Measured:
    # Requests abandoned by the previous run may still sit in a sync server's listen queue:
    # one answered request (served after them) means the server is idle again.
    settle(f"{running.url}/v1/models/{model}:predict", body.read_bytes())
    before = scrape.read(running.metrics_urls, model)
    cpu_before = cpu.tree_seconds(running.pid) if running.pid else None
    result = loadgen.run_wrk(f"{running.url}/v1/models/{model}:predict", body, connections=connections,
                             seconds=seconds, count_statuses=count_statuses, cpus=plan.wrk_cpus)
    cpu_ms = None
    if cpu_before is not None and result.requests:
        cpu_ms = 1000 * (cpu.tree_seconds(running.pid) - cpu_before) / result.requests
    return Measured(result, scrape.read(running.metrics_urls, model) - before, cpu_ms)


def _raw_limits(plan: Plan, models: list[BenchModel], model_root: Path) -> dict[str, dict]:
    limits = {}
    for model in models:
        log(f"raw model limit: {model.name}")
        limits[model.name] = json.loads(_python(
            "-m", "bench.raw", str(model.version_dir(model_root) / "model.keras"),
            "--batches", ",".join(map(str, plan.raw_batches)), "--seconds", str(plan.raw_seconds)))
    return limits


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


def _rounds(plan: Plan, running: dict[str, Running], bodies: dict[str, Path]) -> list[Point]:
    samples: dict[tuple[str, str, int], list[Measured]] = {}
    for rep in range(plan.repetitions):
        for key, target in running.items():
            for model, body in bodies.items():
                if rep == 0 and plan.warmup_seconds:
                    loadgen.run_wrk(f"{target.url}/v1/models/{model}:predict", body, connections=8,
                                    seconds=plan.warmup_seconds)
                for c in plan.concurrency:
                    measured = _load(plan, target, model, body, c, plan.seconds)
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


def _overload(plan: Plan, key: str, inference: Running, body: Path) -> Overload:
    from services.inference.config import load_settings

    log(f"overload: {key} {plan.overload_model} c={plan.overload_concurrency}")
    measured = _load(plan, inference, plan.overload_model, body, plan.overload_concurrency,
                     plan.overload_seconds, count_statuses=True)
    return Overload(key, plan.overload_model, plan.overload_concurrency, measured.load,
                    measured.batch, load_settings().queue_budget_ms)


def run(plan: Plan) -> Results:
    started = time.monotonic()
    targets = plan.chosen_targets()
    results = Results(plan, titles={key: t.title for key, t in targets.items()})
    load_before = os.getloadavg()[0]
    models = [m for m in MODELS if m.name in plan.models]
    model_root = plan.work / "models"
    log(f"building the benchmark models under {model_root}")
    _python("-m", "bench.models", "--root", str(model_root))
    results.raw = _raw_limits(plan, models, model_root)
    bodies = write_bodies(models, plan.work / "bodies")
    logs = plan.out / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = Start(model_root, logs, {n: b.read_bytes() for n, b in bodies.items()}, plan.workers)
    with ExitStack() as stack:
        running = _start(stack, targets, start, results)
        results.points = _rounds(plan, running, bodies)
        if plan.overload_seconds and plan.overload_model in bodies:
            results.overloads = [_overload(plan, key, running[key], bodies[plan.overload_model])
                                 for key in ("inference", "compare") if key in running]
    results.seconds = time.monotonic() - started
    results.load_average = (load_before, os.getloadavg()[0])
    return results
