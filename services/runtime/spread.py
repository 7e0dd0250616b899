"""Spread long-lived connections evenly over Gunicorn's worker processes.

Every worker polls the one listening socket and whichever takes a new connection first keeps it
for good when the client reuses it (wrk, nginx's keep-alive upstream pool, any pooled client).
Measured with 2 gthread workers and 32 connections opened together: splits of 24/8, 26/6, 31/1
and 32/0; at 32/0 throughput halved, one process (one GIL) doing all the work while the other
idled. So each worker publishes its open connection count on a board in shared memory, and a
worker holding clearly more connections than a live peer gives that peer a few milliseconds to
take a new connection before taking it itself.
"""

from __future__ import annotations

import mmap
import select
import struct
import time
from typing import Any

SLOTS = 256  # one per worker, by the worker's age (Gunicorn numbers every worker it spawns)
STALE_SECONDS = 3.0  # a worker's loop ticks at least once a second; older entries are dead
YIELD_SECONDS = 0.005  # how long a busier worker leaves a new connection to a less busy one
MARGIN = 2  # yield only to a peer with at least this many fewer connections
_SLOT = struct.Struct("dd")  # open connections, heartbeat (time.monotonic(): one clock for all)


class Board:
    """Connection counts of the workers; created before the fork so that all of them share it."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._slots = slots
        self._memory = mmap.mmap(-1, slots * _SLOT.size)  # anonymous, MAP_SHARED: kept across fork

    def publish(self, slot: int, connections: int) -> None:
        _SLOT.pack_into(self._memory, (slot % self._slots) * _SLOT.size, connections, time.monotonic())

    def clear(self, slot: int) -> None:
        _SLOT.pack_into(self._memory, (slot % self._slots) * _SLOT.size, 0, 0.0)

    def fewest_elsewhere(self, slot: int) -> float | None:
        """The lowest connection count among the other live workers, or None if none is live."""
        live_since = time.monotonic() - STALE_SECONDS
        counts = [
            connections
            for index, (connections, heartbeat) in enumerate(_SLOT.iter_unpack(self._memory))
            if index != slot % self._slots and heartbeat >= live_since
        ]
        return min(counts) if counts else None

    def should_yield(self, slot: int, connections: int) -> bool:
        fewest = self.fewest_elsewhere(slot)
        return fewest is not None and connections >= fewest + MARGIN


def wait_for_peer(listener: Any, seconds: float = YIELD_SECONDS) -> bool:
    """Give other workers up to ``seconds`` to take the pending connection; True if one did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readable, _, _ = select.select([listener], [], [], 0)
        if not readable:
            return True
        time.sleep(0.0005)
    return False
