"""Process lifecycle shared by the routes and the Gunicorn worker.

A worker that has been told to stop must say "not ready" at once so load balancers stop
sending it work, while it keeps serving what it already accepted. On Kubernetes it is told
before SIGTERM, by the drain file its pod's preStop hook creates (:func:`is_draining`).

A request can wait inside the worker before any view runs: a gthread worker queues readable
connections until one of its threads is free. The worker records when the request's bytes
arrived, so admission control can count that wait too (see :func:`arrived`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


class Flag:
    """A switch that a signal handler may flip.

    Not a ``threading.Event``: its ``set()`` takes a lock, and a second SIGTERM arriving while the
    first handler holds it runs the handler again in the same thread, which then waits forever on
    that lock (seen under SIGHUP reloads, where the Gunicorn master repeats its SIGTERM).
    """

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def clear(self) -> None:
        self._on = False

    def is_set(self) -> bool:
        return self._on


draining = Flag()

# The drain announced before SIGTERM: Kubernetes runs a pod's preStop hook first, and the
# chart's hook creates this file (the image's `drain` command) at the start of its pause.
# From then on the service says "not ready" and `Connection: close` while it keeps serving,
# so the gateway's probes and nginx's upstream connections leave the pod within about a
# second, instead of when DNS or SIGTERM catch up (docs/architecture.md, "Zero failed
# requests during rollouts and deletions").
_drain_file = ""
_checked_at = 0.0
CHECK_EVERY = 0.1  # seconds between looks at the file: a stat, at most ten times a second


def watch_drain_file(path: str | os.PathLike[str]) -> None:
    """Watch ``path`` in this process (a worker); empty turns the watch off."""
    global _drain_file, _checked_at
    _drain_file, _checked_at = str(path or ""), 0.0


def forget_drain_file(path: str | os.PathLike[str]) -> None:
    """Remove a stale announcement, in the master at start: a container restarted inside its
    pod (e.g. after a failed liveness probe, which runs preStop too) finds the file its
    predecessor's hook left on the shared emptyDir, and must not start out draining."""
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def is_draining() -> bool:
    """Whether this process drains: SIGTERM reached it, or the drain file has appeared."""
    global _checked_at
    if draining.is_set():
        return True
    if _drain_file:
        now = time.monotonic()
        if now - _checked_at >= CHECK_EVERY:
            _checked_at = now
            if os.path.exists(_drain_file):
                draining.set()
                return True
    return False

# Servers a worker runs beside its HTTP one (the inference service's gRPC server): each a
# function that starts a graceful stop of ``grace`` seconds and returns an event set once done.
_beside: list[Callable[[float], threading.Event]] = []
_stopping: list[threading.Event] = []


def serve_beside(stop: Callable[[float], threading.Event]) -> None:
    """Register a server of this worker that its drain must stop too (:func:`stop_beside`)."""
    _beside.append(stop)


def stop_beside(grace: float) -> None:
    """Start stopping every server registered beside HTTP (once; not from a signal handler):
    each stops taking calls and gives those in flight ``grace`` seconds."""
    while _beside:
        _stopping.append(_beside.pop()(grace))


def wait_beside(timeout: float) -> None:
    """Wait, at most ``timeout`` seconds in all, for the stopped servers to finish."""
    until = time.monotonic() + timeout
    for event in _stopping:
        event.wait(max(0.0, until - time.monotonic()))


_request = threading.local()


def mark_arrival(monotonic: float | None) -> None:
    """Called by the worker in the thread about to handle a request that arrived then."""
    _request.arrived = monotonic


def arrived() -> float:
    """``time.monotonic()`` when this thread's request arrived (now, if no worker said)."""
    return getattr(_request, "arrived", None) or time.monotonic()
