"""The chart renders with Helm's engine, lints clean, and every document is valid Kubernetes."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from stack.nginx_config import PLACEHOLDERS
from tests.deploy import chart
from tests.deploy.chart import CASES, CHART, REPO
from tools.helm_template import render

# Custom resources have no schema in kubernetes-validate. Each one allowed here is checked by
# its own test (below, and the Prometheus Operator's in test_chart_monitoring.py); any other
# unknown kind (or a removed API version) is a failure.
CRDS = {("gateway.networking.k8s.io/v1", "HTTPRoute"), ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule")}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("oldest", [True, False], ids=["oldest", "newest"])
def test_helm_lint_strict_is_clean(case, oldest):
    kube_version = "v" + chart.versions(case)[0 if oldest else -1]
    result = helm.lint(str(CHART), chart.values(case), strict=True, kube_version=kube_version, namespace="ml")
    problems = [m for m in result["messages"] if m["severity"] >= 2]  # 1 is info ("icon is recommended")
    assert not result["errors"] and not problems, result


@pytest.mark.parametrize("case", CASES)
def test_every_document_validates_strictly(case):
    versions = chart.versions(case)
    documents = chart.docs(case) + chart.hooks(case)
    assert len(documents) > 10
    for doc in documents:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{doc['kind']} {doc['metadata']['name']} on {version}: {error.message} at {list(error.path)}"
                )
            except kv_utils.SchemaNotFoundError as error:
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {error.message}")


def test_the_native_sleep_action_needs_1_30_and_the_default_exec_covers_1_28():
    """Why preStop.mode defaults to exec: the native sleep action is not valid on 1.28 (a
    server rejects it as an unknown field), the exec form is."""
    nginx = chart.named(chart.docs("native-sleep"), "Deployment", "modelserver-nginx")
    with pytest.raises(kubernetes_validate.ValidationError, match="sleep"):
        kubernetes_validate.validate(nginx, "1.28.0", strict=True)
    for deployment in chart.of_kind(chart.docs("defaults"), "Deployment"):
        kubernetes_validate.validate(deployment, "1.28.0", strict=True)


def test_an_unknown_kind_is_not_silently_accepted():
    with pytest.raises(kv_utils.SchemaNotFoundError):
        kubernetes_validate.validate({"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "x"}},
                                     "1.30.0", strict=True)


# Gateway API v1 HTTPRoute: the parts the chart emits, from the Gateway API reference
# (gateway.networking.k8s.io/v1, HTTPRoute, ParentReference, HTTPBackendRef, HTTPPathMatch).
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
HTTPROUTE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["parentRefs", "rules"],
            "properties": {
                "parentRefs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": _NAME,
                            "namespace": _NAME,
                            "sectionName": _NAME,
                            "group": {"type": "string"},
                            "kind": {"type": "string"},
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        },
                    },
                },
                "hostnames": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "string",
                        "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                    },
                },
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matches": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "path": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["type", "value"],
                                            "properties": {
                                                "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                                                "value": {"type": "string", "pattern": "^/"},
                                            },
                                        }
                                    },
                                },
                            },
                            "backendRefs": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["name", "port"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "name": _NAME,
                                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                        "weight": {"type": "integer", "minimum": 0},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("case", ["httproute-on", "everything"])
def test_httproute_has_the_gateway_api_v1_shape(case):
    (route,) = chart.of_kind(chart.docs(case), "HTTPRoute")
    jsonschema.validate(route, HTTPROUTE_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):  # the check is real: a typo fails it
        jsonschema.validate(
            {**route, "spec": {**route["spec"], "parentRef": route["spec"]["parentRefs"]}}, HTTPROUTE_SCHEMA
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image": {"tag": "latest"}}, "/image/tag"),
        ({"inference": {"models": {"digits": {"image": {"tag": "latest"}}}}}, "/digits/image/tag"),
        ({"nginx": {"image": {"tag": "latest"}}}, "/nginx/image/tag"),
        ({"inference": {"models": {"Digits_2": {}}}}, "Digits_2"),
        ({"inference": {"replicaCounts": 2}}, "replicaCounts"),
        ({"fullnameOverride": "a" * 40}, "longer than 63"),
        ({"inference": {"models": {"digits": {"canary": {"enabled": True}}}}}, "canary.weights"),
        (
            {
                "inference": {
                    "models": {"digits": {"canary": {"enabled": True, "weights": {"1": 1}, "labels": {"a": 1}}}}
                }
            },
            "not both",
        ),
        (
            {"inference": {"models": {"digits": {"canary": {"enabled": True, "labels": {"a/b": 1}}}}}},
            "does not match pattern",
        ),
        (
            {"inference": {"models": {"digits": {"modelConfig": "model_config_list { config { name: 'other' } }"}}}},
            "modelConfig must configure the model digits",
        ),
        ({"gateway": {"apiKeys": {"enabled": True}}}, "existingSecret"),
        ({"httpRoute": {"enabled": True}}, "parentRefs"),
        ({"inference": {"terminationGracePeriodSeconds": 20}}, "terminationGracePeriodSeconds 20"),
        ({"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}}, "above maxReplicas"),
        ({"preStop": {"mode": "pause"}}, "mode"),
        ({"inference": {"resources": {"limits": {"cpu": None}}}}, "cpu"),
        ({"tests": {"model": "nope"}}, "nope"),
        ({"modelControl": {"enabled": True}}, "modelControl.existingSecret"),
        (
            {"modelControl": {"enabled": True, "keys": ["a"]}, "networkPolicy": {"enabled": False}},
            "needs networkPolicy.enabled",
        ),
        (
            {"modelControl": {"enabled": True, "existingSecret": "x"}, "networkPolicy": {"enabled": False}},
            "needs networkPolicy.enabled",
        ),
        (
            {
                "modelControl": {"enabled": True, "keys": ["same"]},
                "gateway": {"apiKeys": {"enabled": True, "keys": ["same"]}},
            },
            "an admin key must be its own",
        ),
    ],
)
def test_mistakes_are_refused_with_a_reason(overrides, message):
    with pytest.raises(helm.HelmError) as caught:
        render(CHART, overrides)
        with helm.Chart.load(str(CHART)) as loaded:  # the hook templates (tests.model)
            loaded.render(overrides, name="modelserver", namespace="ml")
    assert message in str(caught.value)


# -- nginx: the chart renders the shared template, and nginx accepts the result ----------------

def test_the_chart_fills_exactly_the_template_placeholders():
    helpers = (CHART / "templates/_nginx.tpl").read_text()
    block = helpers.split('define "modelserver.nginxPlaceholders"', 1)[1].split("{{- end }}", 1)[0]
    assert set(re.findall(r"^([A-Z][A-Z0-9_]*):", block, re.MULTILINE)) == set(PLACEHOLDERS)


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(NGINX is None, reason="nginx not installed (apt-get install nginx-light)")
@pytest.mark.parametrize("case", ["defaults", "kind", "everything"])
def test_nginx_accepts_the_config_the_chart_renders(case, tmp_path):
    conf = chart.nginx_conf(chart.docs(case))
    assert "${" not in conf
    # Only what cannot exist on this machine changes: the Service names become loopback (nginx
    # resolves upstreams at start) and the pod's /tmp emptyDir becomes a temporary directory.
    upstreams = set(re.findall(r"server ([a-z0-9-]+):\d+", conf))
    assert upstreams, conf
    for host in upstreams:
        conf = conf.replace(f"server {host}:", "server 127.0.0.1:")
    conf = re.sub(r"(?<=[ ])/tmp(?=[/;])", str(tmp_path), conf)
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run([NGINX, "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


CLIENT_KEEPALIVE_TIME = re.compile(r"^    keepalive_time (\d+)s;$", re.MULTILINE)  # http block, not upstream


@pytest.mark.parametrize("case", CASES)
def test_nginx_moves_keepalive_clients_off_within_the_prestop_pause(case):
    """A stopping nginx pod leaves the endpoints at the start of its pause, but a busy keep-alive
    connection stays on it until nginx's graceful stop closes it between two requests (1-6
    failed requests per stop, measured on 1.28). keepalive_time makes nginx answer such a
    connection `Connection: close` during the pause, so its client reconnects to a live pod."""
    documents = chart.docs(case)
    conf = chart.nginx_conf(documents)
    (keepalive_time,) = [int(s) for s in CLIENT_KEEPALIVE_TIME.findall(conf)]
    (pre_stop,) = [c["lifecycle"]["preStop"] for _, c in chart.workloads(documents) if c["name"] == "nginx"]
    pause = pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else int(pre_stop["exec"]["command"][-1])
    assert pause == chart.values(case).get("preStop", {}).get("seconds", 10)
    # endpoint propagation (~1 s) + keepalive_time + one more request must end inside the pause
    assert 1 <= keepalive_time <= pause / 2, (keepalive_time, pause)
    # the upstream's own keepalive_time (recycling connections to gateway pods) is separate
    assert re.search(r"upstream gateway \{[^}]*keepalive_time 5m;", conf, re.S)


@pytest.mark.parametrize("case", ["defaults", "everything"])
def test_nginx_never_proxies_metrics_or_the_status_page(case):
    conf = chart.nginx_conf(chart.docs(case))
    for location in (re.escape("= /metrics"), re.escape(r"~ ^/status(\.json|\.js)?$")):
        block = re.search(location + r" \{([^}]*)\}", conf)
        assert block and "return 404" in block[1] and "proxy_pass" not in block[1], (location, conf)


def test_values_yaml_documents_every_key():
    """Every key has a comment right above it that starts with the key's name (Helm's convention).
    Keys inside Kubernetes objects passed through as they are (resources, behavior, ...) are exempt."""
    passthrough = {"resources", "behavior", "seccompProfile", "capabilities", "startup", "readiness",
                   "liveness", "dns", "hosts", "models", "podSecurityContext"}
    lines = (CHART / "values.yaml").read_text().splitlines()
    parents: list[tuple[int, str]] = []
    undocumented = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)(?:- )?([A-Za-z][A-Za-z0-9]*):", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key = len(match[1]), match[2]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        exempt = any(name in passthrough for _, name in parents)
        parents.append((indent, key))
        if exempt or line.lstrip().startswith("- "):
            continue
        start = number
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        comment = lines[start].strip() if start < number else ""
        if not re.match(rf"^# {key}\b", comment):
            undocumented.append(f"line {number + 1}: {key}")
    assert not undocumented, "document these keys with a comment starting with their name:\n" + "\n".join(undocumented)


def test_values_yaml_passes_its_own_schema():
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"inference": {"modelz": {}}}, schema)


def test_the_chart_supports_kubernetes_1_28_and_later():
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert metadata["kubeVersion"] == ">=1.28.0-0"
    assert metadata["appVersion"] == __import__("services").__version__
    assert (REPO / "helm/modelserver/templates/NOTES.txt").exists()


@pytest.mark.parametrize("case", CASES)
def test_notes_render_and_never_print_api_keys(case):
    with helm.Chart.load(str(CHART)) as loaded:
        notes = loaded.render(chart.values(case), name="modelserver", namespace="ml")["modelserver/templates/NOTES.txt"]
    assert "helm upgrade modelserver" in notes
    for key in chart.values(case).get("gateway", {}).get("apiKeys", {}).get("keys", []):
        assert key not in notes


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize("case", ["defaults", "model-control-created", "model-control-existing"])
def test_model_control_is_off_unless_enabled_and_then_takes_admin_keys_of_its_own(case):
    docs = chart.docs(case)
    enabled = chart.values(case).get("modelControl", {}).get("enabled", False)
    inference = [c for d in chart.of_kind(docs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "inference"]
    assert inference and {_env(c)["INFERENCE_REPOSITORY_CONTROL"] for c in inference} == {"on" if enabled else "off"}
    (gateway,) = [d for d in chart.of_kind(docs, "Deployment")
                  if any(c["name"] == "gateway" for c in d["spec"]["template"]["spec"]["containers"])]
    pod = gateway["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    if not enabled:
        assert "GATEWAY_ADMIN_KEYS_FILE" not in env and not any("admin" in s for s in secrets)
        return
    control = chart.values(case)["modelControl"]
    key = control.get("secretKey", "admin-keys")
    assert env["GATEWAY_ADMIN_KEYS_FILE"] == f"/etc/modelserver/admin-keys/{key}"
    name = control.get("existingSecret") or "modelserver-admin-keys"
    assert name in secrets
    created = [d for d in chart.of_kind(docs, "Secret") if d["metadata"]["name"] == "modelserver-admin-keys"]
    assert bool(created) == (not control.get("existingSecret"))
    if created:
        assert base64.b64decode(created[0]["data"][key]).decode() == "admin-one\n"
        assert env.get("GATEWAY_API_KEYS_FILE") != env["GATEWAY_ADMIN_KEYS_FILE"]
