"""Per-key token buckets shared by every worker process of one gateway.

Counting per worker would let a key send ``workers x`` its rate (and how much more would depend on
which worker the kernel hands its connections to), so the buckets live in one small file mapped
by every worker: the Gunicorn master creates it before forking (:func:`prepare_shared_file`).
Slots are found by open addressing on a key's fingerprint; updates take an ``flock``, which
the kernel releases if a worker dies holding it.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable

from services.common.errors import TooManyRequests

ENV = "MODELSERVER_GATEWAY_RATELIMIT_FILE"
_SLOT = struct.Struct("=Qdd")  # key fingerprint (0 = free), tokens, time of last refill
SLOTS = 16384  # keys; more than any keys file should hold (384 KiB)


def take(tokens: float, stamp: float, now: float, rate: float, burst: float) -> tuple[bool, float, float]:
    """One request against a token bucket: (allowed, tokens left, seconds until one is free)."""
    tokens = min(burst, tokens + max(0.0, now - stamp) * rate)
    if tokens >= 1.0:
        return True, tokens - 1.0, 0.0
    return False, tokens, (1.0 - tokens) / rate


def fingerprint(identity: str) -> int:
    """A non-zero 64-bit slot key for a caller identity."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "little") or 1


def prepare_shared_file() -> str:
    """Create the bucket file (in the master, before fork) and tell the workers where it is."""
    fd, path = tempfile.mkstemp(prefix="modelserver-ratelimit-")
    try:
        os.ftruncate(fd, SLOTS * _SLOT.size)
    finally:
        os.close(fd)
    os.environ[ENV] = path
    return path


def remove_shared_file() -> None:
    path = os.environ.pop(ENV, None)
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class RateLimiter:
    def __init__(
        self, rate: float, burst: float, path: str | None = None,
        clock: Callable[[], float] = time.monotonic,  # CLOCK_MONOTONIC: one clock for all processes
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        path = path or os.environ.get(ENV) or prepare_shared_file()
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, SLOTS * _SLOT.size)
        self._lock = threading.Lock()  # flock excludes processes, not threads of one process
        self._fingerprints: dict[str, int] = {}

    def check(self, identity: str) -> None:
        """Spend a token of ``identity``'s bucket, or raise :class:`TooManyRequests`."""
        key = self._fingerprints.get(identity)
        if key is None:
            key = self._fingerprints.setdefault(identity, fingerprint(identity))
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                allowed, wait = self._take(key)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        if not allowed:
            raise TooManyRequests(
                f"rate limit of {self.rate:g} requests/s exceeded; retry in {wait:.2f} s", retry_after=wait
            )

    def _take(self, key: int) -> tuple[bool, float]:
        now = self._clock()
        start = key % SLOTS
        for probe in range(SLOTS):
            offset = ((start + probe) % SLOTS) * _SLOT.size
            stored, tokens, stamp = _SLOT.unpack_from(self._map, offset)
            if stored == 0:  # first request of this key: a full bucket
                stored, tokens, stamp = key, self.burst, now
            if stored == key:
                allowed, tokens, wait = take(tokens, stamp, now, self.rate, self.burst)
                _SLOT.pack_into(self._map, offset, key, tokens, now)
                return allowed, wait
        return True, 0.0  # table full: a rate limit is not worth refusing service over
