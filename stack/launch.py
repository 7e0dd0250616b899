"""Starting things locally, one way, for every tool: `make run` itself, the tests, `make bench`,
`make soak` and `make load-test`.

Processes run in a session of their own with their output in a log file; ports are free
loopback ports; readiness is one poll of one URL. :func:`start_stack` starts the whole stack
(``python -m stack``) and returns once it has written its ``stack.json`` (every piece ready).
Standard library only, so that any tool can import it without the services' dependencies.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATE_FILE = "stack.json"  # in the run directory: the URL and every process id, once all are ready
LOCK_FILE = "lock"  # in the run directory: held by the launcher that owns it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def probe(url: str, timeout: float = 2) -> tuple[int, str]:
    """(status, first 200 characters of the body) of a GET; (0, the error) if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(200).decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def answers_ok(url: str) -> bool:
    return probe(url)[0] == 200


class Process:
    """A child process in its own session (so its group can be killed whole), its output in a
    log file for post-mortems."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = REPO):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            list(argv), env={**os.environ, **env}, cwd=cwd, stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30, *, reap_group: bool = True) -> int:
        """Signal the process and wait; kill the whole group if it overstays.

        ``reap_group`` also kills whatever of the group is left after a clean exit (workers of
        a crashed master would keep ports and CPUs busy); off for tests that check that the
        process cleaned up after itself.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if reap_group:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode


def wait_until_ready(url: str, process: Process | None = None, timeout: float = 120) -> None:
    """Until ``url`` answers 200; fails early, with the log's tail, if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"server exited early:\n{process.log_tail()}")
        status, body = probe(url)
        if status == 200:
            return
        last = f"{status} {body}" if status else body
        time.sleep(0.2)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}\n{tail}")


@dataclass
class LocalStack:
    """A running ``python -m stack``: nginx → gateway → inference replicas."""

    process: Process
    run_dir: Path
    model_root: Path

    @property
    def state(self) -> dict:
        return json.loads((self.run_dir / STATE_FILE).read_text())

    @property
    def url(self) -> str:
        return self.state["url"]

    @property
    def grpc(self) -> str:
        """nginx's gRPC address, host:port."""
        return self.state["grpc"]

    def log(self, name: str, lines: int = 30) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 90, *, reap_group: bool = False) -> int:
        """SIGINT is Ctrl-C: the launcher stops every piece in order and removes its state file.
        The group is left alone by default: the launcher's own clean-up is what is tested."""
        return self.process.stop(sig, timeout, reap_group=reap_group)


def claim(run_dir: Path) -> int | None:
    """Take ``run_dir`` for one launcher: the descriptor of its held lock, or None if another
    launcher holds it. Two stacks in one directory would rewrite each other's nginx config, pid
    files and logs (seen: the first one's nginx restarted under load and answered errors)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # left by a launcher that was killed outright
    return fd


def start_stack(
    model_root: Path, run_dir: Path, *, port: int | None = None, grpc_port: int | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None, log_path: Path | None = None, timeout: float = 240,
) -> LocalStack:
    """Start the stack on ``port`` and ``grpc_port`` (free ones by default) over ``model_root``, its logs and state
    in ``run_dir``; return once every piece is ready. ``args``: more of ``python -m stack``'s."""
    held = claim(run_dir)  # refuse at once, and clear a stale state file, before starting
    if held is None:
        raise RuntimeError(f"a stack is already running in {run_dir}")
    os.close(held)
    log_path = log_path or run_dir / "launcher.log"
    process = Process(
        [sys.executable, "-m", "stack", "--port", str(port or free_port()),
         "--grpc-port", str(grpc_port or free_port()), "--model-root", str(model_root),
         "--run-dir", str(run_dir), *args],
        env or {}, log_path,
    )
    stack = LocalStack(process, run_dir, model_root)
    deadline = time.monotonic() + timeout
    while not (run_dir / STATE_FILE).exists():
        if not process.alive() or time.monotonic() > deadline:
            stack.stop(signal.SIGKILL)
            raise RuntimeError(f"the stack did not start:\n{process.log_tail(60)}")
        time.sleep(0.3)
    return stack
