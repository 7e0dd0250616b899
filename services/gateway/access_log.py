"""One JSON line per request: who asked for what, where it went, how it ended."""

from __future__ import annotations

import logging

log = logging.getLogger("modelserver.gateway.access")


def enable(on: bool) -> None:
    """``GATEWAY_ACCESS_LOG``: off, no line is formatted at all (behind nginx, which logs too)."""
    log.setLevel(logging.NOTSET if on else logging.WARNING)


def write(
    *, request_id: str, method: str, path: str, model: str, version: str, status: int,
    duration: float, backend: str, retried: str, caller: str, health: bool = False,
) -> None:
    """``caller`` is a key id (never the key); health checks go at debug level, not to noise."""
    level = logging.DEBUG if health else logging.INFO
    if not log.isEnabledFor(level):
        return
    log.log(level, "request", extra={"fields": {
        "request_id": request_id, "method": method, "path": path, "model": model,
        "version": version, "status": status, "duration_ms": round(duration * 1000, 3),
        "backend": backend, "retried": retried, "caller": caller,
    }})
