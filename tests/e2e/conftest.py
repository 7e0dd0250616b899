"""The end-to-end suite's target: the local stack by default, any deployed stack by URL.

With ``E2E_BASE_URL`` unset, a real local stack (nginx → gateway → 2 inference replicas) is
started on free ports for the session. With ``E2E_BASE_URL`` set (e.g. a kind cluster's nginx
NodePort mapping) the same HTTP tests run against it; tests that need to reach inside the
stack (kill a process, drop a model version in) run only against the local stack, and their
cluster counterparts live in test_cluster.py.
"""

from __future__ import annotations

from pathlib import Path

from stack import launch
from stack.launch import LocalStack  # noqa: F401  (the tests' type for it)
from tests.support import models


def start_stack(base: Path, digits_version: Path, *extra: str, env: dict | None = None) -> tuple[str, LocalStack]:
    model_root = base / "models"
    if not (model_root / "digits" / "1").exists():
        models.copy_version(digits_version, model_root, "digits", 1)
    stack = launch.start_stack(model_root, base / "run", args=extra, env=env, log_path=base / "launcher.log")
    return stack.url, stack


def wait_ready(url: str, timeout: float = 60) -> None:
    launch.wait_until_ready(f"{url}/readyz", timeout=timeout)
