"""`make bench` in miniature: every stage runs against real servers and the report is sane.

The full run (minutes) is not part of CI; this quick mode (one short round at two
concurrencies, one worker per server) proves the harness works end to end.
"""

from __future__ import annotations

import subprocess

import pytest

from bench import loadgen, perf_analyzer, report
from bench.__main__ import parse_plan
from bench.runner import run
from tests.support.servers import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    if not loadgen.wrk_available():
        installed = subprocess.run([str(REPO / "tools/system-packages.sh"), "wrk:wrk"],
                                   capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            pytest.skip(f"wrk is not installed and cannot be: {installed.stderr.strip()}")
    plan = parse_plan(["--quick", "--out", str(tmp_path_factory.mktemp("reports"))])
    results = run(plan)
    return results, *report.write(results)


def test_report_and_plot_are_written(quick):
    results, md, png = quick
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = md.read_text()
    for fragment in ("## Raw model limit (1)", "| (3) inference service | digits | 1 |",
                     "| (2) naive Flask + model.predict | cnn | 8 |",
                     "| (3) inference service, V2 binary | cnn | 8 |", "## Overload", "## Targets",
                     "![throughput and p99 against concurrency](bench.png)"):
        assert fragment in text
    assert "| (3) via the gateway | digits | 1 |" in text and "| (4) nginx → gateway → inference | digits | 8 |" in text
    assert not results.skipped, results.skipped
    # Triton's perf_analyzer ran against the service and its table is in the report.
    assert "## Triton's perf_analyzer" in text and not results.perf_analyzer_skipped
    assert [r.concurrency for r in results.perf_analyzer] == [1, 2]
    assert all(r.rate > 0 and 0 < r.p50_ms <= r.p99_ms for r in results.perf_analyzer)
    assert (md.parent / "perf_analyzer.csv").exists()
    # The same service over HTTP and gRPC (V2 and TF Serving's Predict), both models, c=1.
    assert "## gRPC beside HTTP" in text and not results.grpc_skipped
    assert sorted(results.grpc) == sorted((m, p) for m in ("digits", "cnn") for p in perf_analyzer.PROTOCOLS)
    assert all([r.concurrency for r in rows] == [1] and rows[0].rate > 0 for rows in results.grpc.values())
    # The digits model as .keras and as SavedModel, side by side at c=8.
    assert "## SavedModel vs .keras" in text and not results.formats_skipped
    assert sorted((p.target, p.model, p.concurrency) for p in results.formats) == [
        ("keras", "digits", 8), ("savedmodel", "digits_savedmodel", 8)]
    assert all(p.rate > 0 and p.errors == 0 for p in results.formats)
    # The stack's overload run (bench.overload, as tests/overload) ran and its promises are listed.
    assert "open loop at twice the capacity" in text and "- stack at 2x capacity: served >= 0.8x capacity:" in text


def test_numbers_are_sane(quick):
    results = quick[0]
    for model in ("digits", "cnn"):
        raw = results.raw[model]
        assert raw["best_samples_per_second"] > 0 and 0 < raw["single_call_ms"] < 1000
    # Four targets on both models, the gateway and the whole stack on digits; two concurrencies.
    assert len(results.points) == (4 * 2 + 2) * 2
    for p in results.points:
        assert p.rate > 0 and p.errors == 0, p
        assert 0 < p.p50_ms <= p.p99_ms < 60_000, p
        assert p.cpu_ms is not None and p.cpu_ms > 0, p
        if p.target.startswith("inference") or p.target in ("gateway", "stack"):
            assert p.batch is not None and 1 <= p.batch <= 64, p
        else:
            assert p.batch is None, p
    # Batching cannot merge one connection's requests: at c=1 every call is a batch of one.
    assert results.point("inference", "digits", 1).batch == 1
    overload = results.overload
    assert overload is not None and overload.served > 0
    assert set(overload.result.statuses) <= {200, 503}
    # Served latency measured from the echoed send times, and consistent with wrk's histogram.
    assert overload.result.served_ms["count"] == overload.served
    assert 0 < overload.served_p99_ms <= overload.served_p99_bound_ms + 1
    checks = report.checks(results)
    assert {c.met for c in checks} <= {True, False, None} and len(checks) >= 4
    assert any(c.name.startswith("gateway hop, digits c=1") for c in checks)
