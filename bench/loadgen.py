"""The load generator: wrk (C, epoll; a few % of a core at these rates) driven by ``wrk.lua``.

Closed loop: ``concurrency`` keep-alive connections on one wrk thread, each sending the next
request as soon as the previous answer arrives. wrk's own latency histogram gives p50/p99; the
Lua script prints the counts the harness needs as one JSON line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench.workload import Request

LUA = Path(__file__).with_name("wrk.lua")
MARKER = "BENCH_RESULT "


class LoadError(RuntimeError):
    """wrk is missing, failed, or printed no result."""


@dataclass(frozen=True)
class LoadResult:
    requests: int  # completed, whatever their status
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int  # connect, read, write errors and timeouts
    status_errors: int  # answers with status >= 400
    statuses: dict[int, int] = field(default_factory=dict)  # only when counted
    latency_ms: dict[float, float] = field(default_factory=dict)  # percentile -> ms
    # Only with count_statuses, against a server that echoes X-Request-ID (the inference
    # service): p50 and p99 of the 200s alone, in ms, and how many there were.
    served_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Answered requests per second (errors included: see ``errors``)."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.status_errors


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    base_url: str, request: Request, *, connections: int, seconds: float, timeout: float = 10.0,
    count_statuses: bool = False, cpus: str | None = None,
) -> LoadResult:
    """POST ``request`` to ``base_url`` from ``connections`` connections for ``seconds``."""
    if not wrk_available():
        raise LoadError("wrk not found: install it (Debian/Ubuntu: apt-get install wrk)")
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout:g}s",
        "-s", str(LUA), base_url + request.path, "--", str(request.body), request.content_type,
        "statuses" if count_statuses else "-", *(f"{name}: {value}" for name, value in request.headers),
    ]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500] or done.stdout[-500:]}")
    raw = json.loads(line[len(MARKER):])
    latency = {float(p): us / 1000 for p, us in raw["latency_us"].items()}
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=latency[50.0],
        p99_ms=latency[99.0],
        max_ms=raw["latency_max_us"] / 1000,
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        status_errors=raw["status_errors"],
        statuses={int(s): n for s, n in raw["statuses"].items()},
        latency_ms=latency,
        served_ms={k: (v if k == "count" else v / 1000) for k, v in raw["served_us"].items()},
    )
