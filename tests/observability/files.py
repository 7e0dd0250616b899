"""Where the dashboard and the alerting rules live: in the chart, the one copy (the chart reads
them with .Files.Get; README "Operating it" points to them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "helm/modelserver/files/prometheus/alerts.yaml"
DASHBOARD = REPO / "helm/modelserver/files/grafana/modelserver-dashboard.json"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
RUNBOOKS = REPO / "docs/operating.md"


def alerts() -> dict[str, Any]:
    return yaml.safe_load(ALERTS.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in alerts()["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in board["panels"] for target in panel.get("targets", [])]
