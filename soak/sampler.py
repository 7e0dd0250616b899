"""What the soak does beside the traffic: sample every process's memory, and upgrade the
model now and then (a new version dropped in, the oldest removed), as an operator would."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from soak import procs


def stack_processes(state: dict) -> dict[int, str]:
    """pid -> "<service>/<master|worker>" for every process of a running stack."""
    found = {}
    names = ["nginx", "gateway", *(f"inference-{i}" for i in range(1, len(state["inference"]) + 1))]
    for name in names:
        master = state[f"{name}_pid"]
        for pid in procs.tree(master):
            found[pid] = f"{name}/{'master' if pid == master else 'worker'}"
    return found


def sample_memory(state_file: Path, every: float, stop: threading.Event,
                  samples: list[tuple[float, dict[str, float]]]) -> None:
    """Append (seconds since start, {"<service>/<role> <pid>": RSS MiB}) every ``every`` s."""
    import json

    started = time.monotonic()
    while True:
        state = json.loads(state_file.read_text())  # rewritten when a process is restarted
        rss = {f"{label} {pid}": procs.rss_bytes(pid) / 2**20 for pid, label in stack_processes(state).items()}
        samples.append((time.monotonic() - started, {k: v for k, v in rss.items() if v}))
        if stop.wait(every):
            return


def upgrade_models(model_root: Path, model: str, every: float, stop: threading.Event,
                   upgrades: list[tuple[float, int]], keep: int = 3) -> None:
    """Every ``every`` s publish version N+1 (a copy of N, renamed in atomically) and delete
    versions beyond the newest ``keep``."""
    started = time.monotonic()
    while not stop.wait(every):
        directory = model_root / model
        versions = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
        newest = versions[-1]
        staging = directory / f".staging-{newest + 1}"
        shutil.copytree(directory / str(newest), staging)
        staging.rename(directory / str(newest + 1))
        upgrades.append((time.monotonic() - started, newest + 1))
        for old in versions[:-(keep - 1)]:
            shutil.rmtree(directory / str(old), ignore_errors=True)
