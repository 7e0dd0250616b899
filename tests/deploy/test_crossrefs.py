"""Names that point at other objects point at objects that exist, with the ports they name,
and probes and routes point at paths the services really serve."""

from __future__ import annotations

import dataclasses
import importlib
import re
from itertools import product

import grpc
import pytest
import yaml
from flask import Flask
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway import routes_file
from services.inference import model_config_file, routes
from services.inference.config import InferenceSettings
from services.inference.metrics import metrics
from services.runtime import frontdoor
from tests.deploy import chart
from tests.deploy.chart import CASES
from tests.support.servers import free_port


def services_by_name(documents):
    return {s["metadata"]["name"]: s for s in chart.of_kind(documents, "Service")}


def selected_deployments(documents, selector):
    return [d for d in chart.of_kind(documents, "Deployment") if chart.selects(selector, chart.pod_labels(d))]


def container_ports(deployment):
    return {(p["name"], p["containerPort"]) for c in chart.containers(deployment) for p in c.get("ports", [])}


def target_exists(target, deployment):
    ports = container_ports(deployment)
    return any(target in (name, number) for name, number in ports)


@pytest.mark.parametrize("case", CASES)
def test_each_service_selects_exactly_one_deployment_and_its_ports(case):
    documents = chart.docs(case)
    for service in chart.of_kind(documents, "Service"):
        (deployment,) = selected_deployments(documents, service["spec"]["selector"])
        for port in service["spec"]["ports"]:
            assert target_exists(port["targetPort"], deployment), f"{service['metadata']['name']}: {port}"
    # and no two Deployments share pods: selectors are distinct
    selectors = [
        tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in chart.of_kind(documents, "Deployment")
    ]
    assert len(selectors) == len(set(selectors))


@pytest.mark.parametrize("case", CASES)
def test_hpas_and_budgets_name_existing_deployments(case):
    documents = chart.docs(case)
    deployments = {d["metadata"]["name"]: d for d in chart.of_kind(documents, "Deployment")}
    for hpa in chart.of_kind(documents, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        deployment = deployments[target["name"]]
        # CPU utilization is relative to requests: every container needs one.
        assert all("cpu" in c["resources"]["requests"] for c in chart.containers(deployment))
    for budget in chart.of_kind(documents, "PodDisruptionBudget"):
        assert len(selected_deployments(documents, budget["spec"]["selector"]["matchLabels"])) == 1


@pytest.mark.parametrize("case", CASES)
def test_ingress_and_httproute_send_traffic_to_nginx(case):
    documents = chart.docs(case)
    services = services_by_name(documents)
    backends = []
    for ingress in chart.of_kind(documents, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]
                backends.append((service["name"], service["port"]))
    for route in chart.of_kind(documents, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            backends += [(ref["name"], {"number": ref["port"]}) for ref in rule["backendRefs"]]
    for name, port in backends:
        service = services[name]
        assert any(port.get("name") == p["name"] or port.get("number") == p["port"] for p in service["spec"]["ports"])
        (deployment,) = selected_deployments(documents, service["spec"]["selector"])
        assert chart.containers(deployment)[0]["name"] == "nginx"
    if case in ("ingress-on", "httproute-on", "everything"):
        assert backends


@pytest.mark.parametrize("case", CASES)
def test_mounted_configmaps_and_secrets_exist(case):
    documents = chart.docs(case)
    configmaps = {c["metadata"]["name"]: c for c in chart.of_kind(documents, "ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in chart.of_kind(documents, "Secret")}
    external = {"team-keys", "ops-admin-keys"}  # existingSecrets in the matrix: the user's own
    for deployment, container in chart.workloads(documents):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                data = configmaps[volume["configMap"]["name"]]["data"]
                if "subPath" in mount:
                    assert mount["subPath"] in data
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets.keys() | external


# -- the network: exactly nginx -> gateway -> inference ----------------------------------------

def _peer_matches(peer, pod_labels):
    if "namespaceSelector" in peer:  # another namespace (DNS, monitoring, edge): not our pods
        return False
    return chart.selects(peer.get("podSelector", {}).get("matchLabels", {}), pod_labels)


def _port_matches(ports, deployment, only=None):
    """Whether a rule's ports let a connection in; ``only``: to that container port number."""
    if only is not None:
        names = {name for name, number in container_ports(deployment) if number == only}
        return not ports or any(p["port"] == only or p["port"] in names for p in ports)
    if not ports:
        return True
    return any(target_exists(p["port"], deployment) for p in ports)


def allowed(documents, source, target, port=None):
    """Whether the NetworkPolicies let pods of `source` open connections to pods of `target`
    (to its container port `port`, when given)."""
    policies = chart.of_kind(documents, "NetworkPolicy")
    source_labels, target_labels = chart.pod_labels(source), chart.pod_labels(target)
    egress = [p for p in policies if chart.selects(p["spec"]["podSelector"]["matchLabels"], source_labels)]
    ingress = [p for p in policies if chart.selects(p["spec"]["podSelector"]["matchLabels"], target_labels)]
    out = not egress or any(
        _port_matches(rule.get("ports"), target, port)
        and any(_peer_matches(peer, target_labels) for peer in rule.get("to", []))
        for policy in egress
        for rule in policy["spec"].get("egress", [])
    )
    into = not ingress or any(
        _port_matches(rule.get("ports"), target, port)
        and ("from" not in rule or any(_peer_matches(peer, source_labels) for peer in rule["from"]))
        for policy in ingress
        for rule in policy["spec"].get("ingress", [])
    )
    return out and into


def component(deployment):
    return chart.pod_labels(deployment)["app.kubernetes.io/component"]


@pytest.mark.parametrize("case", [c for c in CASES if c != "network-policy-off"])
def test_network_policies_allow_exactly_the_request_path(case):
    documents = chart.docs(case)
    deployments = chart.of_kind(documents, "Deployment")
    policies = chart.of_kind(documents, "NetworkPolicy")
    for deployment in deployments:  # every pod is covered, both directions
        (policy,) = [
            p for p in policies if chart.selects(p["spec"]["podSelector"]["matchLabels"], chart.pod_labels(deployment))
        ]
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        dns = policy["spec"]["egress"][0]
        assert {p["port"] for p in dns["ports"]} == {53}
        # networkPolicy.dns, e.g. NodeLocal DNSCache's address; an empty list: any resolver
        configured = chart.values(case).get("networkPolicy", {}).get("dns")
        assert dns.get("to") == (configured if configured is not None else [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]) or (configured == [] and "to" not in dns)
    edges = {
        (component(a), component(b))
        for a, b in product(deployments, repeat=2)
        if a is not b and allowed(documents, a, b)
    }
    expected = {("nginx", "gateway")} | {
        ("gateway", component(d)) for d in deployments if component(d).startswith("inference-")
    }
    assert edges == expected


def test_the_network_check_is_real():
    documents = [yaml.safe_load(yaml.safe_dump(d)) for d in chart.docs("defaults")]
    (inference_policy,) = [
        p for p in chart.of_kind(documents, "NetworkPolicy") if p["metadata"]["name"] == "modelserver-inference-digits"
    ]
    inference_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] = (
        "nginx"
    )
    nginx, gateway, inference = (
        chart.named(documents, "Deployment", f"modelserver-{n}") for n in ("nginx", "gateway", "inference-digits")
    )
    assert not allowed(documents, gateway, inference)
    assert not allowed(documents, nginx, inference)  # nginx's own egress still stops it


# -- paths: probes and routes point at what the services serve ---------------------------------

def inference_app():
    """The real inference routes, without loading a model (or TensorFlow)."""
    app = Flask("probe-check")
    admission = frontdoor.Admission(1.0, routes.is_model_call, what="inference", threads=1)
    app.register_blueprint(routes.build(None, InferenceSettings(), metrics(), admission, None))
    return app


def gateway_module(name):
    """A module of the gateway service, which another branch is building; skip until it is here."""
    try:
        return importlib.import_module(f"services.gateway.{name}")
    except ModuleNotFoundError as error:
        if error.name and error.name.startswith("services.gateway"):
            pytest.skip("the gateway service is not in this tree yet")
        raise


def served(app, path):
    try:
        app.url_map.bind("localhost").match(path, method="GET")
    except Exception:  # werkzeug NotFound / MethodNotAllowed
        return False
    return True


@pytest.mark.parametrize("case", CASES)
def test_inference_probes_hit_routes_the_app_serves(case):
    app = inference_app()
    assert not served(app, "/no-such-probe")  # the check can fail
    for _deployment, container in chart.workloads(chart.docs(case)):
        if container["name"] == "inference":
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert served(app, container[probe]["httpGet"]["path"]), probe
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the one that drains
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # the one that never depends on models


def test_gateway_probes_hit_routes_the_gateway_serves(tmp_path, monkeypatch):
    module = gateway_module("app")
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(yaml.safe_dump({"models": {"digits": {"backends": ["127.0.0.1:9"]}}}))
    monkeypatch.setenv("GATEWAY_ROUTES_FILE", str(routes_file))
    grpc_port = free_port()
    monkeypatch.setenv("GATEWAY_GRPC_BIND", f"127.0.0.1:{grpc_port}")
    app = module.create_app()
    server = app.extensions["grpc_server"]
    try:
        (deployment,) = [d for d in chart.of_kind(chart.docs("defaults"), "Deployment") if component(d) == "gateway"]
        container = chart.containers(deployment)[0]
        for probe in ("startupProbe", "livenessProbe"):
            assert served(app, container[probe]["httpGet"]["path"]), probe
        # Readiness: Kubernetes' native gRPC probe on the gateway's gRPC port, grpc.health.v1's Check.
        probe_port = container["readinessProbe"]["grpc"]["port"]
        assert ("grpc", probe_port) in container_ports(deployment)
        assert chart.env(container)["GATEWAY_GRPC_BIND"] == f"0.0.0.0:{probe_port}"
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        # Its one replica (port 9) is down: not serving, as /readyz would say 503.
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(None)


def upstream_servers(conf, name):
    block = re.search(rf"upstream {name} {{(.*?)}}", conf, re.DOTALL)[1]
    return re.findall(r"server ([a-z0-9.-]+):(\d+)", block)


def named_port(service, name):
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == name]
    return port


@pytest.mark.parametrize("case", CASES)
def test_grpc_goes_nginx_to_gateway_to_each_inference_pod_on_named_grpc_ports(case):
    """nginx listens for gRPC on its container's grpc port and passes it to the gateway Service's
    grpc port; the gateway listens there, and each inference pod on its own grpc port (which its
    /readyz tells the gateway); every Service names the port grpc, with appProtocol grpc; and
    the network policies let each hop through on that port (a policy check on the numbers)."""
    documents = chart.docs(case)
    conf = chart.nginx_conf(documents)
    services = services_by_name(documents)
    deployments = {component(d): d for d in chart.of_kind(documents, "Deployment")}
    listen = int(re.search(r"listen (\d+) http2;", conf)[1])
    assert ("grpc", listen) in container_ports(deployments["nginx"])
    for deployment in deployments.values():
        for service in services.values():
            if chart.selects(service["spec"]["selector"], chart.pod_labels(deployment)):
                port = named_port(service, "grpc")
                assert port["targetPort"] == "grpc" and port["appProtocol"] == "grpc"
    ((host, port),) = set(upstream_servers(conf, "gateway_grpc"))
    gateway_service = services[host]
    assert named_port(gateway_service, "grpc")["port"] == int(port)
    gateway = chart.containers(deployments["gateway"])[0]
    (gateway_grpc,) = [p["containerPort"] for p in gateway["ports"] if p["name"] == "grpc"]
    assert chart.env(gateway)["GATEWAY_GRPC_BIND"] == f"0.0.0.0:{gateway_grpc}"
    network = case != "network-policy-off"
    assert not network or allowed(documents, deployments["nginx"], deployments["gateway"], gateway_grpc)
    for name, deployment in deployments.items():
        if name.startswith("inference-"):
            container = chart.containers(deployment)[0]
            (grpc_port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
            assert chart.env(container)["INFERENCE_GRPC_BIND"] == f"0.0.0.0:{grpc_port}"
            assert not network or allowed(documents, deployments["gateway"], deployment, grpc_port)
            assert not network or not allowed(documents, deployments["nginx"], deployment, grpc_port)


@pytest.mark.parametrize("case", CASES)
def test_nginx_probes_hit_nginx_itself(case):
    documents = chart.docs(case)
    conf = chart.nginx_conf(documents)
    for deployment, container in chart.workloads(documents):
        if container["name"] == "nginx":
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = container[probe]["httpGet"]["path"]
                assert re.search(rf"location = {re.escape(path)} \{{[^}}]*return 200", conf), path
            listen = int(re.search(r"listen (\d+);", conf)[1])
            assert (("http", listen) in container_ports(deployment))


@pytest.mark.parametrize("case", CASES)
def test_nginx_upstream_is_the_gateway_service(case):
    documents = chart.docs(case)
    services = services_by_name(documents)
    for host, port in re.findall(r"server ([a-z0-9.-]+):(\d+)", chart.nginx_conf(documents)):
        service = services[host]
        assert service["spec"]["type"] == "ClusterIP" and "clusterIP" not in service["spec"]
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}
        (deployment,) = selected_deployments(documents, service["spec"]["selector"])
        assert component(deployment) == "gateway"


@pytest.mark.parametrize("case", CASES)
def test_gateway_routes_point_at_each_models_headless_service(case):
    documents = chart.docs(case)
    services = services_by_name(documents)
    (gateway,) = [d for d in chart.of_kind(documents, "Deployment") if component(d) == "gateway"]
    container = chart.containers(gateway)[0]
    routes_path = chart.env(container)["GATEWAY_ROUTES_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if routes_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    configmap = chart.named(documents, "ConfigMap", volume["configMap"]["name"])
    table = yaml.safe_load(configmap["data"][routes_path.rsplit("/", 1)[1]])

    models = set(chart.values(case).get("inference", {}).get("models", {"digits": {}}))
    assert set(table["models"]) == models
    for model, route in table["models"].items():
        for backend in route["backends"]:
            host, port = backend.rsplit(":", 1)
            service = services[host]
            assert service["spec"]["clusterIP"] == "None"  # one name, every ready pod's address
            (deployment,) = selected_deployments(documents, service["spec"]["selector"])
            assert component(deployment) == f"inference-{model}"
            # A headless name resolves to pod addresses: the port must be the container's.
            assert ("http", int(port)) in container_ports(deployment)
        if "versions" in route:
            assert all(str(v).isdigit() for v in route["versions"]) and sum(route["versions"].values()) > 0
    routes_file.parse(configmap["data"][routes_path.rsplit("/", 1)[1]])  # the gateway's own parser accepts it


@pytest.mark.parametrize("case", CASES)
def test_a_model_config_file_is_mounted_read_only_and_parses_with_the_services_parser(case):
    documents = chart.docs(case)
    models = chart.values(case).get("inference", {}).get("models", {"digits": {}})
    for deployment in chart.of_kind(documents, "Deployment"):
        if not component(deployment).startswith("inference-"):
            continue
        model = component(deployment).removeprefix("inference-")
        container = chart.containers(deployment)[0]
        path = chart.env(container).get("INFERENCE_MODEL_CONFIG_FILE")
        assert bool(path) == bool((models[model] or {}).get("modelConfig")), model
        if not path:
            continue
        (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        assert mount["readOnly"] and "subPath" not in mount  # a subPath would never see an edit
        (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
        configmap = chart.named(documents, "ConfigMap", volume["configMap"]["name"])
        parsed = model_config_file.parse(configmap["data"][path.rsplit("/", 1)[1]], path, default_kept=2)
        assert model in parsed


@pytest.mark.parametrize("case", ["api-keys-created", "api-keys-existing", "everything"])
def test_the_gateway_and_the_test_pod_read_the_same_api_keys(case):
    documents = chart.docs(case)
    (gateway,) = [d for d in chart.of_kind(documents, "Deployment") if component(d) == "gateway"]
    container = chart.containers(gateway)[0]
    keys_path = chart.env(container)["GATEWAY_API_KEYS_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if keys_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret_name, key = volume["secret"]["secretName"], keys_path.rsplit("/", 1)[1]
    # The Secret's files are owner/group-readable only; the pod's fsGroup is what lets UID 10001 in.
    assert volume["secret"]["defaultMode"] & 0o004 == 0
    assert gateway["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001
    for secret in chart.of_kind(documents, "Secret"):
        assert secret["metadata"]["name"] == secret_name and key in secret["data"]
    (pod,) = chart.of_kind(chart.hooks(case), "Pod")
    (reference,) = [
        e["valueFrom"]["secretKeyRef"] for e in pod["spec"]["containers"][0]["env"] if e["name"] == "API_KEYS"
    ]
    assert reference == {"name": secret_name, "key": key}


@pytest.mark.parametrize("case", [c for c in CASES if chart.values(c).get("tests", {}).get("enabled", True)])
def test_the_helm_test_pod_calls_nginx(case):
    documents = chart.docs(case)
    (pod,) = chart.of_kind(chart.hooks(case), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    settings = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    host, port = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", settings["BASE_URL"]).groups()
    service = services_by_name(documents)[host]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    (deployment,) = selected_deployments(documents, service["spec"]["selector"])
    assert component(deployment) == "nginx"
    assert f"inference-{settings['MODEL']}" in {component(d) for d in chart.of_kind(documents, "Deployment")}


# -- settings: every variable the chart sets is one the service reads -------------------------

def declared(settings_class, prefix):
    from services.common import settings

    return {
        name
        for field in dataclasses.fields(settings_class)
        for name in settings.env_names(settings_class, prefix, field.name)
    }


@pytest.mark.parametrize("case", CASES)
def test_the_chart_sets_only_settings_the_inference_service_reads(case):
    from services.inference.config import PREFIX

    known = declared(InferenceSettings, PREFIX)
    assert "INFERENCE_GRACEFUL_TIMEOUT" in known and "INFERENCE_GRACEFULTIMEOUT" not in known
    for _, container in chart.workloads(chart.docs(case)):
        if container["name"] == "inference":
            unknown = {name for name in chart.env(container) if name.startswith(PREFIX)} - known
            assert not unknown, f"the inference service has no setting {sorted(unknown)}"


def test_the_chart_sets_only_settings_the_gateway_reads():
    config = gateway_module("config")
    (settings_class,) = [v for v in vars(config).values() if dataclasses.is_dataclass(v) and isinstance(v, type)]
    known = declared(settings_class, config.PREFIX)
    for case in CASES:
        for _, container in chart.workloads(chart.docs(case)):
            if container["name"] == "gateway":
                unknown = {name for name in chart.env(container) if name.startswith(config.PREFIX)} - known
                assert not unknown, f"the gateway has no setting {sorted(unknown)}"
