"""Triton's perf_analyzer against the inference service: what a Triton user would measure it with.

perf_analyzer (installed by ``make setup``: tools/perf-analyzer.sh) reads the model's V2
metadata and configuration, sends V2 requests over HTTP or gRPC (or TF Serving's Predict over
gRPC) at each concurrency of a range, and
reads the server's side of the latency from the statistics extension. Its CSV (``-f``) is kept
in reports/perf_analyzer.csv and summarised as a table in the benchmark report.
"""

from __future__ import annotations

import csv
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import VENV_BIN

BINARY = VENV_BIN / "perf_analyzer"


# What perf_analyzer speaks: V2 over HTTP (binary tensors), V2 over gRPC (raw contents), and
# TF Serving's gRPC PredictionService (its --service-kind tfserving: one sample of --shape).
PROTOCOLS = ("http", "grpc", "tfserving")


def command(url: str, model: str, concurrency: str, interval_ms: int, csv_path: Path | None = None,
            *, protocol: str = "http", shape: str = "", zeros: bool = False) -> list[str]:
    """The perf_analyzer command line: a protocol of ``PROTOCOLS``, a concurrency range
    ``start:end[:step]``, and a loose stability rule (the cores are shared with the server it
    measures). ``shape``: ``input:d1,d2,...`` of one request, which tfserving needs."""
    kind = ["-i", "http"] if protocol == "http" else ["-i", "grpc"]
    if protocol == "tfserving":
        kind += ["--service-kind", "tfserving", "--shape", shape]
    if zeros:  # perf_analyzer's random bytes read as floats include NaNs, which the service refuses
        kind += ["--input-data", "zero"]
    argv = [str(BINARY), "-m", model, "-u", url.removeprefix("http://"), *kind,
            "--concurrency-range", concurrency, "--measurement-interval", str(interval_ms),
            "--stability-percentage", "50", "--max-trials", "6"]
    return argv + (["-f", str(csv_path)] if csv_path else [])


@dataclass(frozen=True)
class Row:
    concurrency: int
    rate: float  # inferences/s
    p50_ms: float
    p99_ms: float
    queue_ms: float  # the server's, from the statistics extension
    compute_ms: float


def run(url: str, model: str, concurrency: str, interval_ms: int, csv_path: Path, timeout: float,
        *, protocol: str = "http", shape: str = "", zeros: bool = False) -> list[Row]:
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    argv = command(url, model, concurrency, interval_ms, csv_path, protocol=protocol, shape=shape, zeros=zeros)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed: {(done.stdout + done.stderr)[-1500:]}")
    return read(csv_path)


def read(csv_path: Path) -> list[Row]:
    """perf_analyzer's CSV: latencies in microseconds."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sorted((Row(
        concurrency=int(r["Concurrency"]), rate=float(r["Inferences/Second"]),
        p50_ms=float(r["p50 latency"]) / 1000, p99_ms=float(r["p99 latency"]) / 1000,
        # TF Serving's API has no statistics: no server columns (0 here)
        queue_ms=float(r.get("Server Queue") or 0) / 1000,
        compute_ms=sum(float(r.get(k) or 0) for k in ("Server Compute Input", "Server Compute Infer",
                                                      "Server Compute Output")) / 1000,
    ) for r in rows), key=lambda row: row.concurrency)


def table(rows: list[Row]) -> str:
    lines = ["| concurrency | infer/s | p50 ms | p99 ms | server queue ms | server compute ms |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.concurrency} | {r.rate:,.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.queue_ms:.2f} "
              f"| {r.compute_ms:.2f} |" for r in rows]
    return "\n".join(lines)


def protocols_table(runs: dict[tuple[str, str], list[Row]]) -> str:
    """One row per model, protocol and concurrency: the same service over HTTP and gRPC."""
    lines = ["| model | protocol | concurrency | infer/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|---:|"]
    for (model, protocol), rows in runs.items():
        lines += [f"| {model} | {protocol} | {r.concurrency} | {r.rate:,.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
                  for r in rows]
    return "\n".join(lines)
