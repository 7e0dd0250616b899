"""A short run of the soak harness (`make soak` runs it for 10 minutes): it starts its own stack,
mixes valid and invalid traffic with a model upgrade, and writes a report with no errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.servers import REPO

pytestmark = pytest.mark.slow


def test_a_short_soak_passes_and_reports_every_section(digits_version, tmp_path):
    out = tmp_path / "soak"
    done = subprocess.run(
        [sys.executable, "-m", "soak", "--seconds", "20", "--model-root", str(digits_version.parent.parent),
         "--replicas", "1", "--concurrency", "4", "--upgrade-every", "6", "--sample-every", "1",
         "--window", "5", "--warmup", "5", "--max-slope", "1000", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["errors"] == 0 and report["requests"] > 200, report["outcomes"]
    assert report["outcomes"]["refused as expected"] > 0  # the invalid part of the mix ran
    assert len(report["upgrades"]) >= 2 and len(report["p99_ms_over_time"]) >= 3
    assert any(name.startswith("inference-1/worker") for name in report["memory"])
    markdown = out.with_suffix(".md").read_text()
    for section in ("## Memory per process", "## p99 of served predictions over time", "RSS slope"):
        assert section in markdown
