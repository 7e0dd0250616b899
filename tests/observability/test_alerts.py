"""The alerting rules, judged by Prometheus' own promtool: valid, and each alert fires on its
synthetic case and stays quiet otherwise (tests/observability/alerts_test.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability import files
from tests.support import markdown
from tests.support.prometheus import MISSING, PROMTOOL

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason=MISSING)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_check_rules_accepts_the_rules():
    result = promtool("check", "rules", files.ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(files.alert_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", files.ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_it_and_one_where_it_stays_quiet():
    cases = yaml.safe_load(files.ALERT_TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    quiet = {t["alertname"] for case in cases for t in case["alert_rule_test"] if not t["exp_alerts"]}
    names = {rule["alert"] for rule in files.alert_rules()}
    assert fired == names
    # promtool compares the whole list of firing alerts, so each case's healthy series (another
    # model, another instance) staying quiet is checked too; these also check a quiet moment.
    assert quiet >= names - {"ModelserverLoadShed", "ModelserverGatewayShedding"}


def mutated(tmp_path: Path, alert: str, expr: str) -> Path:
    """A copy of the rules with one alert's expression replaced, and the unit tests pointing to it."""
    rules = files.alerts()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load(files.ALERT_TESTS.read_text())
    tests["rule_files"] = ["alerts.yaml"]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    return tmp_path / "alerts_test.yaml"


@needs_promtool
@pytest.mark.parametrize("alert", [rule["alert"] for rule in files.alert_rules()])
@pytest.mark.parametrize(("how", "expr"), [("never", "vector(1) > 2"), ("always", "vector(1)")])
def test_the_unit_tests_fail_when_an_alert_never_or_always_fires(tmp_path, alert, how, expr):
    """The unit tests are real: an alert that cannot fire, or fires with no cause, fails them."""
    result = promtool("test", "rules", mutated(tmp_path, alert, expr))
    assert result.returncode != 0, f"{alert} {how}: the unit tests still pass\n{result.stdout}"
    assert alert in result.stdout + result.stderr


def test_every_alert_has_a_summary_and_a_runbook_section_in_the_docs():
    headings = markdown.anchors(files.RUNBOOKS.read_text())
    for rule in files.alert_rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.endswith("/docs/operating.md") and anchor == rule["alert"].lower(), annotations["runbook_url"]
        assert anchor in headings, f"docs/operating.md has no section for {rule['alert']}"
