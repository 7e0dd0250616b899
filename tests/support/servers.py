"""Real Gunicorn servers of each service on free loopback ports (processes: stack/launch.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from stack.launch import Process, free_port, wait_until_ready  # noqa: F401  (the tests' names for them)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


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


def connections_per_worker(master: int, port: int) -> list[int]:
    """Established connections to ``port`` held by each worker of ``master`` (from /proc)."""
    return list(connections_by_worker(master, port).values())


def connections_by_worker(master: int, port: int) -> dict[int, int]:
    """Established connections to ``port`` by worker pid of ``master`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
               and (p / "stat").exists() and (p / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(master)]
    counts = {}
    for worker in workers:
        links = [os.readlink(fd) for fd in Path(f"/proc/{worker}/fd").iterdir()]
        counts[worker] = sum(link[8:-1] in inodes for link in links if link.startswith("socket:["))
    return counts
