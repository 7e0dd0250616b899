"""Prometheus exposition that stays correct under several Gunicorn worker processes.

Each worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``; ``/metrics`` (served by
any worker) sums them. The directory must be set before ``prometheus_client`` is first imported
in a worker, which is why :func:`prepare_multiprocess_dir` runs in the Gunicorn master.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import Response

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """Create (or empty) the shared sample directory; called once, in the master, before fork."""
    configured = os.environ.get(ENV)
    if configured:
        path = Path(configured)
        if path.exists():
            for child in path.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="modelserver-metrics-"))
        os.environ[ENV] = str(path)
    # Import now, with the directory set: Gunicorn calls child_exit from its SIGCHLD handler,
    # and an import there can be re-entered by the next SIGCHLD (two workers exiting at once,
    # as on SIGHUP) and kill the master with a circular-import error.
    from prometheus_client import multiprocess  # noqa: F401
    return path


def mark_process_dead(pid: int) -> None:
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def registry() -> Any:
    """Every worker's samples (summed as each metric's mode says), or this process's alone."""
    from prometheus_client import REGISTRY, CollectorRegistry

    if not os.environ.get(ENV):
        return REGISTRY
    from prometheus_client import multiprocess

    aggregated = CollectorRegistry()
    multiprocess.MultiProcessCollector(aggregated)
    return aggregated


def samples(prefix: str) -> list[Any]:
    """The current samples whose name starts with ``prefix``, over all workers: what a view
    that must answer for the whole server (not the worker it runs in) reads."""
    return [
        sample
        for family in registry().collect()
        for sample in family.samples
        if sample.name.startswith(prefix)
    ]


def metrics_response() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    # content_type, not mimetype: Flask appends "; charset=utf-8" to a text/* mimetype, and
    # CONTENT_TYPE_LATEST carries its charset already (scrapers saw it twice).
    return Response(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
