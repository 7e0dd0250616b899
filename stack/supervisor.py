"""Start, watch and stop the stack's processes -- a launcher of our own, on purpose.

honcho and supervisord were the alternatives. Neither can wait for a process to be *ready*
(a model loaded and warm) before starting the next one, and both stop everything at once,
while a clean stop here is ordered: nginx first (no new requests), then the gateway, then
inference (each draining what it holds). That ordering, readiness gating, restart of a crashed
replica and "no process left behind" (children die with the launcher, via PR_SET_PDEATHSIG)
are what this module does, in about a hundred lines.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("stack")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the launcher is killed outright, the
    # kernel sends SIGTERM to this child, so nothing outlives `make run`.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def raise_session_priority(steps: int) -> None:
    """Raise this process's session group on the CPUs by ``steps`` nice levels, best effort.

    Every service runs in a session of its own, and where the kernel groups processes by
    session (autogroup, Debian's default) the groups share the CPUs equally, whatever a
    process's own nice. On one machine the tier that refuses load (nginx) then waits its turn
    behind the saturated Python tiers: shed p99 of 61-105 ms at twice the capacity, all of it
    nginx's own immediate 503s (p50 0.2 ms). Its own CPU use is small, so a higher weight costs
    the others little. Without the privilege (CAP_SYS_NICE) it stays at the default."""
    for change in (lambda: os.nice(-steps), lambda: Path("/proc/self/autogroup").write_text(str(-steps))):
        try:
            change()
        except OSError:
            pass


@dataclass
class Service:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ready: Callable[[], bool]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    restart: bool = True
    priority: int = 0  # nice levels above the default for the service's session group
    process: subprocess.Popen | None = field(default=None, repr=False)
    restarts: int = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                list(self.argv), env={**os.environ, **self.env}, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=self._prepare,
                # Own session: Ctrl-C reaches only the launcher, which then stops the children
                # in order and gracefully instead of all at once.
                start_new_session=True,
            )

    def _prepare(self) -> None:  # in the child, after its new session and before exec
        _die_with_parent()
        if self.priority:
            raise_session_priority(self.priority)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, services: Sequence[Service], ready_timeout: float = 180,
                 on_restart: Callable[[Service], None] | None = None) -> None:
        self.services = list(services)
        self.ready_timeout = ready_timeout
        self.on_restart = on_restart  # e.g. record the new pid
        self._stopping = threading.Event()

    def start_all(self) -> None:
        """Start services in order, each only once the previous ones answer ready."""
        for service in self.services:
            service.start()
            self._wait_ready(service)

    def _wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not service.ready():
            if not service.running():
                raise RuntimeError(f"{service.name} exited during start; see {service.log_path}")
            if time.monotonic() > deadline or self._stopping.is_set():
                raise RuntimeError(f"{service.name} not ready after {self.ready_timeout:.0f}s; see {service.log_path}")
            time.sleep(0.2)

    def watch(self, poll: float = 0.5) -> None:
        """Until asked to stop: restart a service that died (like a Deployment would)."""
        while not self._stopping.wait(poll):
            for service in self.services:
                if not service.running() and not self._stopping.is_set():
                    code = service.process.returncode if service.process else None
                    if not service.restart:
                        raise RuntimeError(f"{service.name} exited ({code}); see {service.log_path}")
                    service.restarts += 1
                    log.warning("%s exited (%s); restarting (restart %d)", service.name, code, service.restarts)
                    service.start()
                    if self.on_restart is not None:
                        self.on_restart(service)

    def request_stop(self) -> None:
        self._stopping.set()

    def stop_all(self, timeout: float = 40) -> None:
        """Stop in order: the front first, so no new work reaches what is draining."""
        self._stopping.set()
        for service in self.services[::-1]:
            if service.running():
                service.process.send_signal(service.stop_signal)
                try:
                    service.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    service.process.kill()
                    service.process.wait(10)
