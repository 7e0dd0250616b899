"""Process lifecycle shared by the routes and the Gunicorn worker.

A worker that has been told to stop must say "not ready" at once so load balancers stop
sending it work, while it keeps serving what it already accepted.

A request can wait inside the worker before any view runs: a gthread worker queues readable
connections until one of its threads is free. The worker records when the request's bytes
arrived, so admission control can count that wait too (see :func:`arrived`).
"""

from __future__ import annotations

import threading
import time


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

_request = threading.local()


def mark_arrival(monotonic: float | None) -> None:
    """Called by the worker in the thread about to handle a request that arrived then."""
    _request.arrived = monotonic


def arrived() -> float:
    """``time.monotonic()`` when this thread's request arrived (now, if no worker said)."""
    return getattr(_request, "arrived", None) or time.monotonic()
