"""The end-to-end suite's target: the local stack by default, any deployed stack by URL.

With ``E2E_BASE_URL`` unset, a real local stack (nginx → gateway → 2 inference replicas) is
started on free ports for the session. With ``E2E_BASE_URL`` set (e.g. a kind cluster's nginx
NodePort mapping) the same HTTP tests run against it; tests that need to reach inside the
stack (kill a process, drop a model version in) run only against the local stack, and their
cluster counterparts live in test_cluster.py.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support import models
from tests.support.servers import Process, free_port


@dataclass
class LocalStack:
    process: Process
    run_dir: Path
    model_root: Path

    @property
    def state(self) -> dict:
        return json.loads((self.run_dir / "stack.json").read_text())

    def log(self, name: str, lines: int = 30) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 90) -> int:
        # The group is left alone: test_ctrl_c_stops_every_process checks the launcher's cleanup.
        return self.process.stop(sig, timeout, reap_group=False)


def start_stack(base: Path, digits_version: Path, *extra: str, env: dict | None = None) -> tuple[str, LocalStack]:
    model_root = base / "models"
    if not (model_root / "digits" / "1").exists():
        models.copy_version(digits_version, model_root, "digits", 1)
    run_dir = base / "run"
    port = free_port()
    process = Process(
        [sys.executable, "-m", "stack", "--port", str(port), "--model-root", str(model_root),
         "--run-dir", str(run_dir), *extra],
        env or {}, base / "launcher.log",
    )
    stack = LocalStack(process, run_dir, model_root)
    deadline = time.monotonic() + 240
    while not (run_dir / "stack.json").exists():
        if not process.alive() or time.monotonic() > deadline:
            stack.stop(signal.SIGKILL)
            raise RuntimeError(f"stack did not start:\n{(base / 'launcher.log').read_text()[-3000:]}")
        time.sleep(0.3)
    return stack.state["url"], stack


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")
