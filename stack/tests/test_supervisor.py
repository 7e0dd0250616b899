"""The launcher's per-service set-up, on real child processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stack.supervisor import Service

AUTOGROUP = Path("/proc/self/autogroup")


def _start(tmp_path: Path, priority: int) -> Service:
    service = Service(name="sleeper", argv=["sleep", "5"], env={}, ready=lambda: True,
                      log_path=tmp_path / "sleeper.log", priority=priority)
    service.start()
    return service


def _autogroups_apply() -> bool:
    """The file is empty when this process sits in a CPU cgroup of its own (a CI runner's, a
    container's): the kernel then schedules by cgroup, and session groups do not apply."""
    return AUTOGROUP.exists() and bool(AUTOGROUP.read_text().strip())


@pytest.mark.skipif(not _autogroups_apply(), reason="session autogroups do not apply to this process")
def test_a_service_runs_in_a_session_group_of_its_own_with_the_priority_asked(tmp_path):
    raised, plain = _start(tmp_path, 7), _start(tmp_path, 0)
    try:
        time.sleep(0.2)  # past exec
        groups = {s.name + str(s.priority): Path(f"/proc/{s.pid}/autogroup").read_text().split()
                  for s in (raised, plain)}
        ours = AUTOGROUP.read_text().split()[0]
        assert groups["sleeper7"][0] != ours and groups["sleeper0"][0] != ours
        assert groups["sleeper7"][0] != groups["sleeper0"][0]
        assert groups["sleeper0"][-1] == "0"
        # Raising needs CAP_SYS_NICE (root here and in CI); without it the service still starts.
        assert groups["sleeper7"][-1] == ("-7" if os.geteuid() == 0 else "0")
    finally:
        for service in (raised, plain):
            service.process.kill()
            service.process.wait()


def test_a_service_runs_with_the_process_priority_asked(tmp_path):
    """Inside a CPU cgroup (where session groups do not apply) the process's own nice is what counts."""
    raised, plain = _start(tmp_path, 7), _start(tmp_path, 0)
    try:
        time.sleep(0.2)  # past exec
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, plain.pid) == base
        expected = max(base - 7, -20) if os.geteuid() == 0 else base
        assert os.getpriority(os.PRIO_PROCESS, raised.pid) == expected
    finally:
        for service in (raised, plain):
            service.process.kill()
            service.process.wait()
