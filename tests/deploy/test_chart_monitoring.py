"""The chart's opt-in monitoring: a PodMonitor on the gateway and inference pods, a
PrometheusRule with the repository's alerting rules, and the Grafana dashboard in a ConfigMap
for the sidecar -- off by default, strictly shaped, and the same files as the repository's.

The Prometheus Operator's CRDs cannot be downloaded here and no PyPI package ships them, so the
schemas below are written from its API reference (monitoring.coreos.com/v1, PodMonitor and
PrometheusRule) for the fields the chart uses, strict: an unknown or misspelt field fails.
"""

from __future__ import annotations

import json

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.deploy import chart
from tests.deploy.chart import CHART
from tests.observability import files
from tools.helm_template import render

MONITORED = [case for case, values in chart.CASES.items() if "monitoring" in values]

# The operator's Duration type.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "labels": _LABELS},
}
_LABEL_SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "matchLabels": _LABELS,
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "required": ["key", "operator"], "additionalProperties": False,
            "properties": {"key": {"type": "string"}, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                           "values": {"type": "array", "items": {"type": "string"}}}}},
    },
}
PODMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "scheme": {"enum": ["http", "https"]},
                        },
                    },
                },
            },
        },
    },
}
_RULE = {
    "type": "object", "required": ["expr"], "additionalProperties": False,
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {"alert": {"type": "string", "minLength": 1}, "record": {"type": "string", "minLength": 1},
                   "expr": {"type": ["string", "integer"], "minLength": 1}, "for": _DURATION,
                   "keep_firing_for": _DURATION, "labels": _LABELS, "annotations": _LABELS},
}
PROMETHEUSRULE_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"}, "metadata": _METADATA,
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "groups": {"type": "array", "items": {
                "type": "object", "required": ["name"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "minLength": 1}, "interval": _DURATION,
                               "rules": {"type": "array", "items": _RULE}}}},
        }},
    },
}


def test_all_off_by_default():
    documents = chart.docs("defaults")
    assert not chart.of_kind(documents, "PodMonitor") and not chart.of_kind(documents, "PrometheusRule")
    assert not [d for d in chart.of_kind(documents, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


@pytest.mark.parametrize("case", MONITORED)
def test_the_custom_resources_have_the_operators_shape(case):
    documents = chart.docs(case)
    (monitor,) = chart.of_kind(documents, "PodMonitor")
    (rule,) = chart.of_kind(documents, "PrometheusRule")
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    jsonschema.validate(rule, PROMETHEUSRULE_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):  # the check is real: a typo fails it
        jsonschema.validate({**monitor, "spec": {**monitor["spec"], "podMetricEndpoints": []}}, PODMONITOR_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        broken = json.loads(json.dumps(rule))
        broken["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
        jsonschema.validate(broken, PROMETHEUSRULE_SCHEMA)


@pytest.mark.parametrize("case", MONITORED)
def test_the_rule_and_the_dashboard_are_the_repositorys_files(case):
    documents = chart.docs(case)
    (rule,) = chart.of_kind(documents, "PrometheusRule")
    assert rule["spec"] == files.alerts()
    (dashboard,) = [d for d in chart.of_kind(documents, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert json.loads(dashboard["data"]["modelserver-dashboard.json"]) == files.dashboard()
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"  # Grafana's sidecar default
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "ML"}
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_sidecar_label_is_configurable():
    """A Grafana whose sidecar watches another label: set it, and null the default one."""
    values = {"monitoring": {"grafanaDashboard": {"enabled": True,
                                                  "labels": {"team-dashboards": "yes", "grafana_dashboard": None}}}}
    (dashboard,) = [d for d in chart.parse(render(CHART, values)) if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["team-dashboards"] == "yes"
    assert "grafana_dashboard" not in dashboard["metadata"]["labels"]


@pytest.mark.parametrize("case", MONITORED)
def test_the_podmonitor_scrapes_gateway_and_inference_pods_on_their_metrics_port_and_not_nginx(case):
    documents = chart.docs(case)
    (monitor,) = chart.of_kind(documents, "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    scraped = set()
    for deployment in chart.of_kind(documents, "Deployment"):
        labels = chart.pod_labels(deployment)
        selected = chart.selects(selector["matchLabels"], labels) and labels[expression["key"]] in expression["values"]
        component = labels["app.kubernetes.io/component"]
        assert selected == (component != "nginx"), deployment["metadata"]["name"]
        if selected:
            scraped.add(component)
            ports = {p["name"] for c in chart.containers(deployment) for p in c.get("ports", [])}
            assert endpoint["port"] in ports, deployment["metadata"]["name"]
    assert "gateway" in scraped and any(c.startswith("inference-") for c in scraped), scraped


@pytest.mark.parametrize("case", MONITORED)
def test_the_network_policies_admit_the_scraper_on_the_port_it_scrapes(case):
    documents = chart.docs(case)
    (monitor,) = chart.of_kind(documents, "PodMonitor")
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    peers = chart.values(case)["networkPolicy"]["metricsFrom"]
    for policy in chart.of_kind(documents, "NetworkPolicy"):
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        if component == "nginx":
            continue
        admitted = [rule for rule in policy["spec"]["ingress"] if rule.get("from") == peers]
        assert admitted and {"port": port, "protocol": "TCP"} in admitted[0]["ports"], component


def test_a_podmonitor_behind_network_policies_that_admit_no_scraper_is_refused():
    with pytest.raises(helm.HelmError, match="networkPolicy.metricsFrom"):
        render(CHART, {"monitoring": {"podMonitor": {"enabled": True}}})
    render(CHART, {"monitoring": {"podMonitor": {"enabled": True}}, "networkPolicy": {"enabled": False},
                   "tests": {"enabled": False}})


def test_values_document_the_monitoring_keys_and_the_schema_refuses_typos():
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"monitoring": {"podMonitor": {"enabeld": True}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"monitoring": {"podMonitor": {"interval": "30 seconds"}}}, schema)
