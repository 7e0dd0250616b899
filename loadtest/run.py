"""`make load-test`: Locust headless against a running stack, or one started for the run."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

from stack import launch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def start_stack(port: int) -> launch.LocalStack:
    try:
        return launch.start_stack(REPO / os.environ.get("MODEL_ROOT", "models"), REPO / ".run/load-test-stack",
                                  port=port)
    except RuntimeError as error:
        raise SystemExit(f"{error}\nsee .run/load-test-stack/logs/") from None


def summary(prefix: Path) -> str:
    with open(f"{prefix}_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    return (
        f"requests {total['Request Count']}, failures {total['Failure Count']}, "
        f"{float(total['Requests/s']):.0f} req/s, p50 {total['50%']} ms, p95 {total['95%']} ms, "
        f"p99 {total['99%']} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("LOAD_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS", 32)))
    parser.add_argument("--spawn-rate", type=float, default=float(os.environ.get("LOAD_SPAWN_RATE", 16)))
    parser.add_argument("--duration", default=os.environ.get("LOAD_DURATION", "60s"))
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stack = None
    if not launch.answers_ok(f"{args.url}/readyz"):
        port = int(args.url.rsplit(":", 1)[1].split("/")[0])
        print(f"no stack answers at {args.url}: starting one for this run", flush=True)
        stack = start_stack(port)
    prefix = args.out / "loadtest"
    try:
        result = subprocess.run(
            [str(BIN / "locust"), "-f", str(REPO / "loadtest/locustfile.py"), "--headless",
             "--host", args.url, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
             "--run-time", args.duration, "--stop-timeout", "10", "--only-summary",
             "--html", f"{prefix}.html", "--csv", str(prefix)],
            cwd=REPO, check=False,
        )
    finally:
        if stack is not None:
            stack.stop(reap_group=True)
    print(f"\n{summary(prefix)}\nreport: {prefix}.html, {prefix}_stats.csv", flush=True)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
