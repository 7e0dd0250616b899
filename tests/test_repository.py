"""What the repository holds: no large files, every test collected, tables whole."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 1024 * 1024  # a 10.6 MB wheel was once committed by mistake


def tracked() -> list[Path]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [Path(name) for name in listing.decode().split("\0") if name]


def test_no_tracked_file_is_over_one_megabyte():
    large = [f"{path} ({(REPO / path).stat().st_size:,} bytes)" for path in tracked()
             if (REPO / path).is_file() and (REPO / path).stat().st_size > MAX_BYTES]
    assert not large, f"large files belong outside git (models, wheels, reports): {large}"


def test_make_test_collects_every_test_file():
    testpaths = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    tests = [p for p in tracked() if re.fullmatch(r"test_.*\.py|.*_test\.py", p.name)]
    missed = [str(p) for p in tests if p.parts[0] not in testpaths]
    assert tests and not missed, f"add their folders to testpaths in pyproject.toml: {missed}"


def test_markdown_table_rows_stay_in_their_table():
    """A row after a blank line renders as text: it must start a table (header, then |---|)."""
    stranded = []
    for path in (p for p in tracked() if p.suffix == ".md"):
        lines = (REPO / path).read_text().splitlines()
        for number, (previous, line, after) in enumerate(zip(["", *lines], lines, [*lines[1:], ""], strict=False), 1):
            if line.startswith("|") and not previous.startswith("|") and not after.startswith("|-"):
                stranded.append(f"{path}:{number}")
    assert not stranded, stranded
