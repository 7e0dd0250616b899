"""Start and stop real server processes (Gunicorn, nginx) on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from stack.__main__ import free_port  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class Process:
    """A child process in its own process group, its output in a log file for post-mortems."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = REPO):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            list(argv), env={**os.environ, **env}, cwd=cwd, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
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
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise RuntimeError(f"server exited early:\n{process.log_tail()}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as error:
            last = str(error)
        time.sleep(0.2)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}\n{tail}")


def start_gunicorn(
    service: str, settings: Mapping[str, str], port: int, log_path: Path, *,
    ready_path: str = "/readyz", ready_timeout: float = 120, prefix: Sequence[str] = (),
) -> tuple[Process, str]:
    """A real Gunicorn server of ``service`` (its gunicorn.conf.py); returns it and its base URL
    once ``ready_path`` answers 200. ``prefix`` runs it through a wrapper (e.g. ``setpriv``)."""
    process = Process(
        [*prefix, str(VENV_BIN / "gunicorn"), "-c", str(REPO / f"services/{service}/gunicorn.conf.py")],
        settings, log_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}{ready_path}", process, ready_timeout)
    except Exception:
        process.stop(signal.SIGKILL)
        raise
    return process, url


def start_inference(
    model_root: Path, log_path: Path, *, port: int | None = None, env: Mapping[str, str] | None = None,
    ready_timeout: float = 120, prefix: Sequence[str] = (),
) -> tuple[Process, str]:
    """A real Gunicorn inference server; returns it and its base URL once /readyz says ready."""
    port = port or free_port()
    settings = {
        "INFERENCE_BIND": f"127.0.0.1:{port}",
        "INFERENCE_MODEL_ROOT": str(model_root),
        "INFERENCE_WORKERS": "1",
        "INFERENCE_POLL_SECONDS": "0.5",
        **(env or {}),
    }
    return start_gunicorn("inference", settings, port, log_path, ready_timeout=ready_timeout, prefix=prefix)


def start_gateway(
    routes_file: Path, log_path: Path, *, port: int | None = None, env: Mapping[str, str] | None = None,
    ready_timeout: float = 60, ready_path: str = "/readyz",
) -> tuple[Process, str]:
    """A real Gunicorn gateway (2 workers, quick probes and file polls) routing by ``routes_file``."""
    port = port or free_port()
    settings = {
        "GATEWAY_BIND": f"127.0.0.1:{port}",
        "GATEWAY_ROUTES_FILE": str(routes_file),
        "GATEWAY_WORKERS": "2",
        "GATEWAY_HEALTH_INTERVAL": "0.2",
        "GATEWAY_ROUTES_POLL": "0.2",
        **(env or {}),
    }
    return start_gunicorn("gateway", settings, port, log_path, ready_path=ready_path,
                          ready_timeout=ready_timeout)
