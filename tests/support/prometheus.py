"""A real Prometheus (Debian's package) for tests, and the check that a PromQL expression refers
only to series a scrape really has.

The check, for an expression: every series selector in it returns series; every label a selector
matches on is a label of the series it returns (``{stauts!~"2.."}`` would otherwise match
everything); every label it groups or matches by (``by (...)``, ``on (...)``) is a label of some
series it selects. Dashboard panels must also return data as a whole. Alert expressions need not:
when nothing is wrong they are empty by design -- that is what the selector checks are for.
"""

from __future__ import annotations

import math
import shutil
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support.promql import PromQLError, references, substitute
from tests.support.servers import Process, free_port

BINARY = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
MISSING = "needs Debian's prometheus package (make setup installs it: tools/system-packages.sh)"

# Metrics that only a Kubernetes cluster has (the kubelet's cAdvisor), used by the dashboard's pod
# panels. The local stack has no containers to measure; a panel on these is checked by name
# against this list, so a misspelt cAdvisor name still fails.
KUBERNETES_ONLY = frozenset({"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"})


class Prometheus:
    """``prometheus`` on a free loopback port with a temporary data directory."""

    def __init__(self, workdir: Path, jobs: Mapping[str, Iterable[str]], rule_files: Iterable[Path] = (),
                 scrape_interval: str = "1s") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                               for job, targets in jobs.items()],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = Process([
            BINARY, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ], {}, workdir / "prometheus.log")
        deadline = time.monotonic() + 60
        while not self._answers("/-/ready"):
            if not self.process.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.process.log_tail()}")
            time.sleep(0.2)

    def _answers(self, path: str) -> bool:
        try:
            return requests.get(f"{self.url}{path}", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in {"vector", "matrix"} else [{"value": data["result"]}]

    def series(self, selector: str, window: float = 300) -> list[dict[str, str]]:
        now = time.time()
        return self.api("series", **{"match[]": selector, "start": now - window, "end": now})

    def stop(self) -> int:
        return self.process.stop(signal.SIGTERM, timeout=30)


def reference_problems(prometheus: Prometheus, expr: str) -> list[str]:
    """What in ``expr`` no series of the scrape backs (see the module's docstring)."""
    try:
        refs = references(expr)
    except PromQLError as error:
        return [str(error)]
    found: list[str] = []
    seen_labels: set[str] = set()
    for selector in refs.selectors:
        if selector.name in KUBERNETES_ONLY:
            continue
        series = prometheus.series(str(selector))
        if not series:
            found.append(f"{selector}: no such series (an unknown metric, or no series with these labels)")
            continue
        labels = set().union(*(s.keys() for s in series))
        seen_labels |= labels
        found += [
            f"{selector}: its series have no label {m.label!r}" for m in selector.matchers if m.label not in labels
        ]
    if not refs.metric_names & KUBERNETES_ONLY:
        found += [f"{expr!r}: groups or matches by {label!r}, a label none of its series has"
                  for label in sorted(refs.grouping_labels - seen_labels)]
    return found


def returns_data(prometheus: Prometheus, expr: str) -> bool:
    """At least one series with a number (a NaN p99 is an empty panel too)."""
    for sample in prometheus.query(expr):
        value = sample.get("value")
        if value is not None and not math.isnan(float(value[1])):
            return True
    return False


def dashboard_problems(prometheus: Prometheus, dashboard: Mapping[str, Any], variables: Mapping[str, str]) -> list[str]:
    """Every panel query (Grafana variables substituted) and every variable query, checked."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} {target['refId']}"
            try:
                expr = substitute(target["expr"], variables)
            except PromQLError as error:
                found.append(f"{where}: {error}")
                continue
            problems = reference_problems(prometheus, expr)
            found += [f"{where}: {problem}" for problem in problems]
            names = references(expr).metric_names
            if not problems and not names & KUBERNETES_ONLY and not returns_data(prometheus, expr):
                found.append(f"{where}: {expr} returns no data")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"]
        selector, _, label = query.removeprefix("label_values(").removesuffix(")").rpartition(",")
        selector = substitute(selector, variables)
        if references(selector).metric_names & KUBERNETES_ONLY:
            continue
        values = prometheus.api(f"label/{label.strip()}/values", **{"match[]": selector})
        if not values:
            found.append(f"variable ${variable['name']}: {query} lists no values")
    return found


def rules_problems(prometheus: Prometheus, rules: Mapping[str, Any]) -> list[str]:
    return [
        f"alert {rule.get('alert', rule.get('record'))}: {problem}"
        for group in rules["groups"] for rule in group["rules"]
        for problem in reference_problems(prometheus, rule["expr"])
    ]
