"""`python -m soak`: start the stack (or use a running one), send the mixed traffic for
``--seconds`` while sampling memory and upgrading the model, then write the report.

Exit status 1 when the stack made any error (a 5xx other than shedding, a wrong answer, a
transport error) or a process's RSS grew faster than ``--max-slope`` MiB/min after warm-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from soak import report, sampler, traffic
from stack import launch

REPO = Path(__file__).resolve().parents[1]


def start_stack(model_root: Path, work: Path, replicas: int) -> launch.LocalStack:
    """A stack of our own on a free port over a copy of ``model_root`` (the soak upgrades it)."""
    models = work / "models"
    shutil.copytree(model_root, models, ignore=shutil.ignore_patterns(".staging-*"))
    try:
        return launch.start_stack(models, work / "run", args=("--replicas", str(replicas)),
                                  log_path=work / "launcher.log")
    except RuntimeError as error:
        sys.exit(str(error))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--model-root", type=Path, default=Path("models"))
    parser.add_argument("--stack-json", type=Path, help="use this running stack instead of starting one")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--upgrade-every", type=float, default=60, help="seconds between model upgrades; 0: none")
    parser.add_argument("--sample-every", type=float, default=5)
    parser.add_argument("--window", type=float, default=30, help="seconds per p99 window")
    parser.add_argument("--warmup", type=float, default=60, help="seconds left out of the RSS slope")
    parser.add_argument("--max-slope", type=float, default=5.0, help="MiB/min of RSS growth that fails the run")
    parser.add_argument("--out", type=Path, default=Path("reports/soak"))
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="modelserver-soak-"))
    own = None
    if args.stack_json:
        state_file = args.stack_json
    else:
        own = start_stack(args.model_root.resolve(), work, args.replicas)
        state_file = own.run_dir / launch.STATE_FILE
    state = json.loads(state_file.read_text())
    stop = threading.Event()
    memory: list = []
    upgrades: list = []
    tally = traffic.Tally()
    chores = [threading.Thread(target=sampler.sample_memory, args=(state_file, args.sample_every, stop, memory),
                               daemon=True)]
    if args.upgrade_every > 0:
        chores.append(
            threading.Thread(
                target=sampler.upgrade_models,
                args=(Path(state["model_root"]), "digits", args.upgrade_every, stop, upgrades),
                daemon=True,
            )
        )
    print(f"soak: {args.seconds:.0f} s against {state['url']} ({args.concurrency} clients)", flush=True)
    started = time.monotonic()
    try:
        for chore in chores:
            chore.start()
        traffic.run(state["url"], args.seconds, args.concurrency, args.window, tally, stop)
    finally:
        stop.set()
        for chore in chores:
            chore.join(30)
        if own is not None:
            own.stop(reap_group=True)
            shutil.rmtree(work, ignore_errors=True)
    result = report.build(time.monotonic() - started, tally.requests, tally.outcomes, tally.windows, args.window,
                          memory, upgrades, min(args.warmup, args.seconds / 3))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(report.markdown(result))
    print(report.markdown(result).split("\n## ")[0], flush=True)
    print(f"report: {args.out.with_suffix('.md')} and .json")
    return 1 if result["errors"] or result["max_rss_slope_mib_per_min"] > args.max_slope else 0


if __name__ == "__main__":
    sys.exit(main())
