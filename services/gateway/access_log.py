"""One JSON line per request: who asked for what, where it went, how it ended."""

from __future__ import annotations

from services.common.logs import AccessLog

_log = AccessLog("modelserver.gateway.access")


class Record:
    """What the access log and the metrics say about one request, filled in as it is served."""

    __slots__ = ("status", "model", "version", "backend", "retried", "caller")

    def __init__(self) -> None:
        self.status = 500  # HTTP's; a gRPC call's code as the HTTP status it stands for
        self.model = "none"
        self.version = ""
        self.backend = "none"
        self.retried = ""
        self.caller = ""


def enable(on: bool) -> None:
    """``GATEWAY_ACCESS_LOG``: off, no line is formatted at all (behind nginx, which logs too)."""
    _log.enable(on)


def write(
    *, request_id: str, trace_id: str, method: str, path: str, model: str, version: str, status: int,
    duration: float, backend: str, retried: str, caller: str, health: bool = False,
    protocol: str = "http", grpc_status: str = "",
) -> None:
    """``caller`` is a key id (never the key); health checks go at debug level, not to noise.
    A gRPC call's ``method`` is ``POST`` and its ``path`` the gRPC method's; ``grpc_status`` is
    the name of the code it ended with."""
    if not _log.on(quiet=health):
        return
    _log.write({
        "request_id": request_id, "trace_id": trace_id, "method": method, "path": path,
        "model": model, "version": version, "status": status, "duration_ms": round(duration * 1000, 3),
        "backend": backend, "retried": retried, "caller": caller, "protocol": protocol,
        **({"grpc_status": grpc_status} if grpc_status else {}),
    }, quiet=health)
