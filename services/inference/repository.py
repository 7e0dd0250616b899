"""Triton's model repository extension (index, load, unload) across the worker processes.

Each Gunicorn worker has its own model store, so a load or unload asked of one worker must
reach them all. The wish is kept in a directory the workers share (the one the master
prepares for the metrics, emptied at every start, so an unload lasts until a restart, as in
Triton): ``unloaded/<model>`` marks a model unloaded, and ``generation`` counts the changes.
Every worker watches the generation; on a change it rescans its store, which leaves marked
models unloaded and loads unmarked ones at once, and writes the generation it applied to
``applied/<pid>``. A load or unload returns once every live worker has applied it.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common import naturals
from services.common.errors import ClientError, NotFound, Unavailable
from services.inference.model_store import ModelStore
from services.protocol.facts import AVAILABLE, LOADING, MODEL_NAME

log = logging.getLogger(__name__)


class Repository:
    def __init__(self, directory: Path, store: ModelStore[Any], *, wait_seconds: float) -> None:
        self._dir = directory
        self._store = store
        self._wait = wait_seconds
        self._marks = directory / "unloaded"
        self._applied_dir = directory / "applied"
        for path in (self._marks, self._applied_dir):
            path.mkdir(parents=True, exist_ok=True)
        self._applied = -1
        self._seen_unloaded: frozenset[str] = frozenset()
        self._lock = threading.Lock()  # one apply at a time in this worker

    # -- what is asked ---------------------------------------------------------------------

    def unloaded(self) -> frozenset[str]:
        """Models a load/unload call left unloaded (the store's scan honours this)."""
        try:
            return frozenset(p.name for p in self._marks.iterdir())
        except OSError:
            return frozenset()

    def _generation(self) -> int:
        try:
            return int((self._dir / "generation").read_text() or 0)
        except (OSError, ValueError):
            return 0

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with open(self._dir / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # -- the calls ---------------------------------------------------------------------------

    def load(self, name: str) -> None:
        """Load (or reload) ``name`` in every worker; 404 if it is not in the model root."""
        self._check_name(name)
        if name not in self._store.names() and not self._store.has_source(name):
            raise NotFound(f"model '{name}' not found in the model repository")
        self._change(name, unload=False)
        model = self._store.model(name)
        if not model.served:
            errors = "; ".join(
                f"version {s.version}: {s.error}" for s in sorted(model.statuses.values(), key=lambda s: s.version)
                if s.error
            ) or model.error or "no loadable version"
            raise ClientError(f"failed to load '{name}': {errors}"[:500])

    def unload(self, name: str) -> None:
        self._check_name(name)
        self._store.model(name)  # 404 for a model the store never saw
        self._change(name, unload=True)

    @staticmethod
    def _check_name(name: str) -> None:
        if not MODEL_NAME.fullmatch(name):
            raise NotFound(f"model '{name[:40]}' not found")

    def _change(self, name: str, *, unload: bool) -> None:
        mark = self._marks / name
        with self._exclusive():
            if unload:
                mark.touch()
            else:
                mark.unlink(missing_ok=True)
            generation = self._generation() + 1
            staging = self._dir / f"generation.{os.getpid()}"
            staging.write_text(str(generation))
            staging.replace(self._dir / "generation")
        self.apply()
        self._wait_for_workers(generation, name)

    def _wait_for_workers(self, generation: int, name: str) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            behind = self._workers_behind(generation)
            if not behind:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"model '{name}': worker processes {behind} have not applied the change within "
                    f"{self._wait:g} s (still loading?); it applies when they get to it",
                    retry_after=5,
                )
            time.sleep(0.05)

    def _workers_behind(self, generation: int) -> list[int]:
        behind = []
        for path in self._applied_dir.iterdir():
            pid = naturals.parse(path.name)
            if not pid or not _alive(pid):
                continue
            try:
                applied = int(path.read_text() or -1)
            except (OSError, ValueError):
                applied = -1
            if applied < generation:
                behind.append(pid)
        return behind

    # -- every worker --------------------------------------------------------------------------

    def apply(self) -> None:
        """Bring this worker's store in line with the marks, if they changed since last time."""
        with self._lock:
            generation = self._generation()
            if generation == self._applied:
                return
            unloaded = self.unloaded()
            # Models whose mark went away load now, without waiting for their files to settle.
            self._store.scan(now=self._seen_unloaded - unloaded)
            self._seen_unloaded = unloaded
            self._applied = generation
            staging = self._applied_dir / f".{os.getpid()}"
            staging.write_text(str(generation))
            staging.replace(self._applied_dir / str(os.getpid()))

    # -- index -----------------------------------------------------------------------------------

    def index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's ``$repository_index_response``: every model, each version's state."""
        unloaded = self.unloaded()
        entries: list[dict[str, str]] = []
        for name in self._store.names():
            model = self._store.model(name)
            if name in unloaded:
                if not ready_only:
                    entries.append({"name": name, "state": "UNAVAILABLE", "reason": "unloaded"})
                continue
            for version, status in sorted(model.statuses.items()):
                served = version in model.served
                if ready_only and not served:
                    continue
                state = "READY" if served else ("LOADING" if status.state == LOADING else "UNAVAILABLE")
                reason = "" if served or status.state == AVAILABLE else (status.error or "unloaded")
                entries.append({"name": name, "version": str(version), "state": state, "reason": reason})
            if not model.statuses and not ready_only:
                entries.append({"name": name, "state": "UNAVAILABLE", "reason": model.error or "no version"})
        return entries


def control_allowed(mode: str, remote_addr: str | None) -> bool:
    """Whether a load/unload from ``remote_addr`` may go ahead under ``INFERENCE_REPOSITORY_CONTROL``."""
    if mode == "on":
        return True
    if mode != "loopback" or not remote_addr:
        return False
    try:
        return ipaddress.ip_address(remote_addr).is_loopback
    except ValueError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
