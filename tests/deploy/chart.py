"""The chart rendered by Helm's own engine (helm-python-sdk) for a matrix of values, as parsed docs.

Every test module in tests/deploy ranges over CASES, so a new values combination is checked by
every policy and cross-reference test at once.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv_utils

from tools.helm_template import render

# kubernetes-validate re-reads a 10 MB definitions file on every call; caching it makes the
# whole matrix take a second instead of fifteen. The returned schemas are never mutated.
kv_utils.schema_contents = functools.cache(kv_utils.schema_contents)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm/modelserver"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RELEASE = "modelserver"
NAMESPACE = "ml"

_KIND_VALUES = yaml.safe_load((REPO / "k8s/kind-values.yaml").read_text())
SMALL_CLUSTER_VALUES = REPO / "k8s/small-cluster-values.yaml"
_TWO_MODELS = {
    "digits": {},
    # A second model from its own image, and a third from a volume: the two ways to bring one.
    "mnist": {"image": {"repository": "registry.example.com/mnist-model", "tag": "3"},
              "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                            "limits": {"cpu": "1500m", "memory": "1Gi"}}},
    "iris": {"modelVolume": {"persistentVolumeClaim": {"claimName": "iris-models"}},
             "modelRoot": "/models/iris-store", "workers": 2, "autoscaling": {"enabled": False},
             "replicaCount": 3},
}
_CANARY = {"digits": {"canary": {"enabled": True, "weights": {"1": 90, "2": 10}},
                      "env": {"INFERENCE_VERSION_POLICY": "latest:2"}}}
# TF Serving's model config file from values, with a canary between its version labels.
_MODEL_CONFIG = {"digits": {"modelConfig": """model_config_list {
  config {
    name: "digits"
    base_path: "/models/digits"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
""", "canary": {"enabled": True, "labels": {"stable": 90, "canary": 10}}}}
_ROUTE = {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "http"}],
          "hostnames": ["models.example.com"]}
_INGRESS = {"enabled": True, "className": "nginx-plus", "hosts": [{"host": "models.example.com",
            "paths": [{"path": "/", "pathType": "Prefix"}]}], "tls": [{"secretName": "models-tls",
            "hosts": ["models.example.com"]}]}
_NO_HPA = {"autoscaling": {"enabled": False}}
_MONITORING = {"podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
               "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
               "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "ML"}}}
_MONITORING_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}

# name -> values. The default values are the first case; the rest each turn one feature on or off.
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "hpa-off": {"inference": _NO_HPA, "gateway": _NO_HPA, "nginx": _NO_HPA},
    "ingress-on": {"ingress": _INGRESS},
    "httproute-on": {"httpRoute": _ROUTE},
    "three-models": {"inference": {"models": _TWO_MODELS}},
    "canary-on": {"inference": {"models": _CANARY}},
    "model-config": {"inference": {"models": _MODEL_CONFIG}},
    "api-keys-created": {"gateway": {"apiKeys": {"enabled": True, "keys": ["k-one", "k-two"]}}},
    "api-keys-existing": {"gateway": {"apiKeys": {"enabled": True, "existingSecret": "team-keys",
                                                  "secretKey": "keys.txt"}}},
    "model-control-created": {"modelControl": {"enabled": True, "keys": ["admin-one"]},
                              "gateway": {"apiKeys": {"enabled": True, "keys": ["k-one"]}}},
    "model-control-existing": {"modelControl": {"enabled": True, "existingSecret": "ops-admin-keys",
                                                "secretKey": "admin.txt"}},
    "prestop-15s": {"preStop": {"seconds": 15}},
    "native-sleep": {"preStop": {"mode": "sleep"}},
    "nodeport": {"nginx": {"service": {"type": "NodePort", "nodePort": 30080}}},
    "loadbalancer": {"nginx": {"service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                                           "loadBalancerSourceRanges": ["10.0.0.0/8"]}}},
    "network-restricted": {"networkPolicy": {
        "nginxFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}},
    "network-policy-off": {"networkPolicy": {"enabled": False}, "tests": {"enabled": False}},
    "dns-nodelocal": {"networkPolicy": {"dns": [
        {"ipBlock": {"cidr": "169.254.20.10/32"}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
         "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}},
    "dns-any": {"networkPolicy": {"dns": []}},
    "tracing-on": {"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318", "to": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}]}},
    "monitoring-on": {"monitoring": _MONITORING, "networkPolicy": {"metricsFrom": [_MONITORING_PEER]}},
    "small-cluster": yaml.safe_load(SMALL_CLUSTER_VALUES.read_text()),
    "kind": _KIND_VALUES,
    "everything": {
        "inference": {"models": {**_TWO_MODELS, **_CANARY}, "autoscaling": {"enabled": False}},
        "gateway": {"apiKeys": {"enabled": True, "keys": ["k-one"]}, "statusPage": True},
        "nginx": {"service": {"type": "NodePort"}},
        "ingress": _INGRESS, "httpRoute": _ROUTE, "preStop": {"mode": "exec", "seconds": 5},
        "fullnameOverride": "ms", "tracing": {"otlpEndpoint": "https://otel.example.com", "port": 443},
        "monitoring": _MONITORING, "networkPolicy": {"metricsFrom": [_MONITORING_PEER]},
    },
}

# Kubernetes versions every document is validated against: the oldest the chart supports and
# the newest kubernetes-validate knows. nginx's native preStop sleep action (preStop.mode=sleep)
# needs 1.30, so such values are validated against 1.30 instead of 1.28.
VERSIONS = ("1.28.0", "1.37.0")
VERSIONS_WITH_NATIVE_SLEEP = ("1.30.0", "1.37.0")


def versions(case: str) -> tuple[str, ...]:
    native = CASES[case].get("preStop", {}).get("mode") == "sleep"
    return VERSIONS_WITH_NATIVE_SLEEP if native else VERSIONS


def values(case: str) -> dict[str, Any]:
    return copy.deepcopy(CASES[case])


@functools.cache
def _manifest(case: str) -> str:
    return render(CHART, values(case), name=RELEASE, namespace=NAMESPACE)


def parse(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]


@functools.cache
def docs(case: str) -> list[dict[str, Any]]:
    """The manifest `helm template` would print (hooks excluded), one dict per document.
    Shared between tests: read it, never change it."""
    return parse(_manifest(case))


@functools.cache
def _hooks(case: str) -> str:
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values(case), name=RELEASE, namespace=NAMESPACE)
    return "\n---\n".join(text for path, text in sorted(rendered.items()) if "/templates/tests/" in path)


@functools.cache
def hooks(case: str) -> list[dict[str, Any]]:
    """The `helm test` hook resources, which install leaves out of the manifest."""
    return parse(_hooks(case))


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in of_kind(documents, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def workloads(documents: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(deployment, container) for every container of every Deployment."""
    for deployment in of_kind(documents, "Deployment"):
        for container in containers(deployment):
            yield deployment, container


def nginx_conf(documents: list[dict[str, Any]]) -> str:
    (configmap,) = [doc for doc in of_kind(documents, "ConfigMap") if "nginx.conf" in doc.get("data", {})]
    return configmap["data"]["nginx.conf"]


def cpu_millis(quantity: str | int | float) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)
