"""Gunicorn server hooks both services install from their ``gunicorn.conf.py``."""

from __future__ import annotations

from typing import Any

from services.common import metrics


def on_starting(server: Any) -> None:
    metrics.prepare_multiprocess_dir()


def child_exit(server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)
