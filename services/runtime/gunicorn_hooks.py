"""Gunicorn server hooks both services install from their ``gunicorn.conf.py``."""

from __future__ import annotations

from typing import Any

from services.common import metrics


def on_starting(server: Any) -> None:
    metrics.prepare_multiprocess_dir()
    # Import now, with the directory set: child_exit runs in a signal handler, where a first
    # import of prometheus_client could collide with one already in progress.
    import prometheus_client.multiprocess  # noqa: F401


def child_exit(server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)
