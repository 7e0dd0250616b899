"""Figures a test measures, shown in the run's output even though pytest captures print()."""

from __future__ import annotations

import pytest


def figure(request: pytest.FixtureRequest, text: str) -> None:
    """One line in the terminal output of the run, e.g. the overload figures or fuzz counts."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"[figures] {text}")
