"""``python -m bench`` (``make bench``): run the benchmark, print the table, write the report.

The default run measures every target at concurrency 1, 8, 32 and 64, three rounds of 3 s per
point, and stays within 10 minutes on 2 cores; ``--quick`` is the seconds-long smoke run CI uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from bench import loadgen, report
from bench.runner import Plan, log, run


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# The smoke run: every stage once, small. One worker per server halves the start-up time.
QUICK = {"concurrency": (1, 8), "repetitions": 1, "seconds": 1.0, "warmup_seconds": 0.5,
         "workers": 1, "raw_batches": (1, 32), "raw_seconds": 0.2,
         "overload_concurrency": 64, "overload_seconds": 1.0, "stack_overload_seconds": 2.0,
         "perf_analyzer_concurrency": "1:2", "perf_analyzer_interval_ms": 500, "grpc_concurrency": "1",
         "formats_concurrency": (8,)}


def parse_plan(argv: list[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s, c=1,8")
    parser.add_argument("--out", type=Path, help="report directory (default reports/)")
    parser.add_argument("--targets", type=_names, help="subset of naive,tuned,inference,inference-v2,gateway,stack")
    parser.add_argument("--models", type=_names, help="subset of digits,cnn")
    parser.add_argument("--concurrency", type=_ints, help="e.g. 1,8,32,64")
    parser.add_argument("--repetitions", type=int)
    parser.add_argument("--seconds", type=float, help="per point and repetition")
    parser.add_argument("--overload-concurrency", type=int)
    parser.add_argument("--overload-seconds", type=float, help="0 skips the overload run")
    parser.add_argument("--stack-overload-seconds", type=float,
                        help="twice the stack's capacity for this long (default 20; 0 skips it)")
    parser.add_argument("--perf-analyzer", dest="perf_analyzer_concurrency",
                        help="perf_analyzer's concurrency range, e.g. 1:9:4 (\"\" skips it)")
    parser.add_argument("--grpc", dest="grpc_concurrency",
                        help="HTTP vs gRPC by perf_analyzer at this concurrency range, e.g. 1:32:31 (\"\" skips it)")
    parser.add_argument("--formats", dest="formats_concurrency", type=_ints,
                        help="SavedModel vs .keras at these concurrencies, e.g. 1,32 (\"\" skips it)")
    parser.add_argument("--wrk-cpus", help="pin wrk with taskset, e.g. 1")
    parser.add_argument("--workers", type=int, help="worker processes per server (default: each one's own)")
    parser.add_argument("--compare-to", type=Path, metavar="CHECKOUT",
                        help="also measure the inference service of another checkout (before/after)")
    args = parser.parse_args(argv)
    values = dict(QUICK) if args.quick else {}
    for name in ("out", "targets", "models", "concurrency", "repetitions", "seconds",
                 "overload_concurrency", "overload_seconds", "stack_overload_seconds", "wrk_cpus",
                 "compare_to", "workers", "perf_analyzer_concurrency", "formats_concurrency", "grpc_concurrency"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return dataclasses.replace(Plan(), **values)


def main(argv: list[str] | None = None) -> int:
    plan = parse_plan(argv)
    if not loadgen.wrk_available():
        print("wrk not found: `make bench` installs it (as root), or apt-get install wrk", file=sys.stderr)
        return 2
    results = run(plan)
    md, png = report.write(results)
    print(md.read_text())
    log(f"wrote {md} and {png} in {results.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
