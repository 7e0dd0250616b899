"""The Gunicorn settings both services share; each ``gunicorn.conf.py`` adds its own."""

from __future__ import annotations

from typing import Any, Protocol


class ServerSettings(Protocol):
    bind: str
    workers: int
    threads: int
    timeout: int
    graceful_timeout: int
    keepalive: int
    log_level: str
    drain_file: str


def common(settings: ServerSettings, *, app: str, name: str) -> dict[str, Any]:
    """Module-level names for a ``gunicorn.conf.py`` (``globals().update(common(...))``)."""
    return {
        "wsgi_app": app,
        "bind": settings.bind,
        "workers": settings.workers,
        # gthread, draining on SIGTERM and SIGHUP (see services.runtime.workers); why each service
        # wants threads is in docs/architecture.md.
        "worker_class": "services.runtime.workers.DrainingThreadWorker",
        "threads": settings.threads,
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": settings.keepalive,
        # Each worker builds its app after the fork: TensorFlow is not fork-safe, and the gateway
        # reads its routes afresh, which is what makes SIGHUP reload them.
        "preload_app": False,
        # The heartbeat file on a tmpfs: a disk-backed /tmp can stall it into false WORKER TIMEOUTs.
        "worker_tmp_dir": "/dev/shm",
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level,
        "proc_name": name,
    }
