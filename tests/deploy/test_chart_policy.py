"""What every pod of the chart must be, for every values combination: bounded, probed,
locked down, labelled, and able to roll and stop without failing a request."""

from __future__ import annotations

import re

import pytest

from tests.deploy import chart
from tests.deploy.chart import CASES

STANDARD_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}
SELECTOR_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
# Seconds each container needs to finish in-flight work after SIGTERM, from its own settings.
DRAIN_ENV = {"inference": "INFERENCE_GRACEFUL_TIMEOUT", "gateway": "GATEWAY_GRACEFUL_TIMEOUT"}
NGINX_UPSTREAM_KEEPALIVE = re.compile(r"upstream gateway \{[^}]*keepalive_timeout (\d+)s;", re.S)


def all_pods(case):
    """(name, pod spec) of every Deployment's pod template and of the helm test pod."""
    for deployment in chart.of_kind(chart.docs(case), "Deployment"):
        yield deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]
    for pod in chart.of_kind(chart.hooks(case), "Pod"):
        yield pod["metadata"]["name"], pod["spec"]


@pytest.mark.parametrize("case", CASES)
def test_every_container_has_requests_and_limits(case):
    for name, pod in all_pods(case):
        for container in pod["containers"]:
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{name}/{container['name']}: {bound}"
            assert chart.cpu_millis(resources["requests"]["cpu"]) <= chart.cpu_millis(resources["limits"]["cpu"])


@pytest.mark.parametrize("case", CASES)
def test_every_long_running_container_has_all_three_probes_on_http_or_grpc(case):
    for deployment, container in chart.workloads(chart.docs(case)):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "httpGet" in container.get(probe, {}) or (
                # The gateway's readiness: a native gRPC probe, on its gRPC container port.
                probe == "readinessProbe" and container["name"] == "gateway"
                and container[probe]["grpc"]["port"] in [p["containerPort"] for p in container["ports"]]
            ), f"{deployment['metadata']['name']}: {probe}"
        # A startup budget shorter than a liveness period would make the startup probe pointless.
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


@pytest.mark.parametrize("case", CASES)
def test_every_pod_is_locked_down(case):
    for name, pod in all_pods(case):
        assert pod["automountServiceAccountToken"] is False, name
        assert pod.get("enableServiceLinks") is False, name
        pod_context = pod["securityContext"]
        assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod_context["runAsNonRoot"] is True and pod_context["runAsUser"] > 0, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), name
            assert context.get("runAsNonRoot", True) is True and not context.get("privileged"), name
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag and tag != "latest" and "/" not in tag, (
                f"{name}: unpinned image {container['image']}"
            )


@pytest.mark.parametrize("case", CASES)
def test_writable_paths_are_emptydirs_and_gunicorn_heartbeats_on_tmpfs(case):
    for deployment, container in chart.workloads(chart.docs(case)):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"] and mounts["/tmp"]["emptyDir"]["sizeLimit"]
        if container["name"] in DRAIN_ENV:  # Gunicorn: worker_tmp_dir = /dev/shm
            assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"
        for path, _volume in mounts.items():
            if path not in ("/tmp", "/dev/shm"):
                readonly = {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}
                assert readonly[path] is True, f"{container['name']}: {path} is writable"


@pytest.mark.parametrize("case", CASES)
def test_rollouts_never_lower_capacity(case):
    for deployment in chart.of_kind(chart.docs(case), "Deployment"):
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        assert deployment["spec"]["minReadySeconds"] >= 1


ENTRYPOINT = "/usr/local/lib/modelserver/entrypoint.sh"  # Dockerfile.inference's ENTRYPOINT


def pre_stop_pause(container):
    """Seconds the container's preStop hook pauses, checking the hook's form on the way."""
    pre_stop = container["lifecycle"]["preStop"]
    if container["name"] in DRAIN_ENV:  # the image's drain command: announce, then pause
        command = pre_stop["exec"]["command"]
        assert command[:2] == [ENTRYPOINT, "drain"] and len(command) == 4, command
        return int(command[3])
    if "sleep" in pre_stop:
        return pre_stop["sleep"]["seconds"]
    command = pre_stop["exec"]["command"]
    assert command[0] == "/bin/sleep", command  # exec form: no shell, the image's sleep
    return int(command[1])


@pytest.mark.parametrize("case", CASES)
def test_inference_and_gateway_announce_their_drain_at_the_start_of_the_pause(case):
    """The preStop hook creates the file the service watches (its *_DRAIN_FILE setting), on the
    /tmp emptyDir both share; the service then leaves rotation while still serving."""
    announced = set()
    for _deployment, container in chart.workloads(chart.docs(case)):
        if container["name"] not in DRAIN_ENV:
            continue
        drain_file = container["lifecycle"]["preStop"]["exec"]["command"][2]
        prefix = DRAIN_ENV[container["name"]].split("_")[0]
        assert chart.env(container)[f"{prefix}_DRAIN_FILE"] == drain_file
        (tmp,) = [m for m in container["volumeMounts"] if drain_file.startswith(m["mountPath"] + "/")]
        assert tmp["mountPath"] == "/tmp" and not tmp.get("readOnly")
        assert pre_stop_pause(container) == chart.values(case).get("preStop", {}).get("seconds", 10)
        announced.add(container["name"])
    assert announced == set(DRAIN_ENV)


def test_the_image_entrypoint_has_the_drain_command(tmp_path):
    """The command the chart's hook runs exists in the image and does what the hook needs."""
    import subprocess
    import time

    entrypoint = chart.REPO / "docker/entrypoint.sh"
    assert f'"{ENTRYPOINT}"]' in (chart.REPO / "Dockerfile.inference").read_text()
    started = time.monotonic()
    result = subprocess.run([str(entrypoint), "drain", str(tmp_path / "draining"), "1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "draining").exists() and time.monotonic() - started >= 1
    assert subprocess.run([str(entrypoint), "drain", "x"], capture_output=True, timeout=30).returncode == 64


@pytest.mark.parametrize("case", CASES)
def test_one_access_log_line_per_request_by_default(case):
    """nginx logs every request; the gateway's own line is on demand (gateway.accessLog)."""
    values = chart.values(case)
    documents = chart.docs(case)
    (gateway,) = [c for _, c in chart.workloads(documents) if c["name"] == "gateway"]
    conf = chart.nginx_conf(documents)
    nginx_logs = "access_log /dev/stdout json;" in conf
    gateway_logs = chart.env(gateway)["GATEWAY_ACCESS_LOG"] == "true"
    assert nginx_logs == values.get("nginx", {}).get("accessLog", True)
    assert gateway_logs == values.get("gateway", {}).get("accessLog", False)
    if case == "defaults":
        assert nginx_logs and not gateway_logs


@pytest.mark.parametrize("case", CASES)
def test_tracing_sends_spans_from_gateway_and_inference_only_to_the_collector(case):
    """tracing.otlpEndpoint: the standard OTEL_* variables and one egress rule to the collector."""
    tracing = chart.values(case).get("tracing", {})
    endpoint = tracing.get("otlpEndpoint", "")
    documents = chart.docs(case)
    for deployment, container in chart.workloads(documents):
        kind = chart.pod_labels(deployment)["app.kubernetes.io/component"].split("-")[0]
        variables = chart.env(container)
        traced = bool(endpoint) and kind != "nginx"
        assert variables.get("OTEL_EXPORTER_OTLP_ENDPOINT") == (endpoint if traced else None)
        assert variables.get("OTEL_SERVICE_NAME") == (f"modelserver-{kind}" if traced else None)
        policies = [p for p in chart.of_kind(documents, "NetworkPolicy")
                    if chart.selects(p["spec"]["podSelector"]["matchLabels"], chart.pod_labels(deployment))]
        rules = [r for p in policies for r in p["spec"]["egress"]
                 if r["ports"] == [{"port": tracing.get("port", 4318), "protocol": "TCP"}]]
        assert len(rules) == (1 if traced and policies else 0)
        if rules and tracing.get("to"):
            assert rules[0]["to"] == tracing["to"]


@pytest.mark.parametrize("case", CASES)
def test_the_status_page_is_off_unless_asked_for_and_never_public(case):
    """gateway.statusPage turns GATEWAY_STATUS_PAGE on; nginx answers /status itself (404)."""
    documents = chart.docs(case)
    (gateway,) = [c for _, c in chart.workloads(documents) if c["name"] == "gateway"]
    wanted = chart.values(case).get("gateway", {}).get("statusPage", False)
    assert chart.env(gateway)["GATEWAY_STATUS_PAGE"] == ("true" if wanted else "false")
    assert wanted == (case == "everything")
    assert re.search(r"location ~ \^/status\S* \{\s*add_header[^}]*return 404", chart.nginx_conf(documents))


@pytest.mark.parametrize("case", CASES)
def test_grace_period_covers_the_pause_and_the_drain(case):
    """SIGKILL comes terminationGracePeriodSeconds after the pod starts terminating, preStop included."""
    documents = chart.docs(case)
    upstream_read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", chart.nginx_conf(documents))[1])
    for deployment, container in chart.workloads(documents):
        pod = deployment["spec"]["template"]["spec"]
        pause = pre_stop_pause(container)
        assert pause >= 5
        if container["name"] in DRAIN_ENV:
            drain = int(chart.env(container)[DRAIN_ENV[container["name"]]])
        else:  # nginx drains (SIGQUIT) until its slowest upstream read can have finished
            drain = upstream_read_timeout
        assert pod["terminationGracePeriodSeconds"] > pause + drain, deployment["metadata"]["name"]


@pytest.mark.parametrize("case", CASES)
def test_services_listen_on_every_interface_and_keepalives_nest(case):
    documents = chart.docs(case)
    nginx_idle = int(NGINX_UPSTREAM_KEEPALIVE.search(chart.nginx_conf(documents))[1])
    for _deployment, container in chart.workloads(documents):
        settings = chart.env(container)
        if container["name"] == "inference":
            assert settings["INFERENCE_BIND"] == "0.0.0.0:8080"
        elif container["name"] == "gateway":
            port = container["ports"][0]["containerPort"]
            assert settings["GATEWAY_BIND"] == f"0.0.0.0:{port}"
            # nginx must close idle upstream connections before the gateway does.
            assert int(settings["GATEWAY_KEEPALIVE"]) > nginx_idle


@pytest.mark.parametrize("case", CASES)
def test_tensorflow_threads_fit_the_cpu_limit(case):
    for deployment, container in chart.workloads(chart.docs(case)):
        if container["name"] != "inference":
            continue
        settings = chart.env(container)
        threads, workers = int(settings["INFERENCE_TF_THREADS"]), int(settings["INFERENCE_WORKERS"])
        limit = chart.cpu_millis(container["resources"]["limits"]["cpu"])
        assert threads >= 1 and settings["OMP_NUM_THREADS"] == settings["INFERENCE_TF_THREADS"]
        assert threads * workers * 1000 <= max(limit, 1000 * workers), deployment["metadata"]["name"]


@pytest.mark.parametrize("case", CASES)
def test_labels_are_standard_and_selectors_minimal(case):
    for doc in chart.docs(case) + chart.hooks(case):
        labels = doc["metadata"]["labels"]
        assert STANDARD_LABELS <= set(labels), f"{doc['kind']} {doc['metadata']['name']}"
        assert labels["helm.sh/chart"] == "modelserver-0.1.0"
        selector = doc.get("spec", {}).get("selector")
        if selector is not None:
            match_labels = selector.get("matchLabels", selector)
            if doc["kind"] == "PodMonitor":  # several components: the component label by a set
                (expression,) = selector["matchExpressions"]
                match_labels = {**match_labels, expression["key"]: expression["values"]}
            assert set(match_labels) == SELECTOR_LABELS, f"{doc['kind']} {doc['metadata']['name']}: {match_labels}"
    for deployment in chart.of_kind(chart.docs(case), "Deployment"):
        # Not helm.sh/chart on pods: a chart-only upgrade would restart every pod.
        assert set(chart.pod_labels(deployment)) == STANDARD_LABELS


@pytest.mark.parametrize("case", CASES)
def test_autoscaled_deployments_start_at_the_hpa_floor(case):
    documents = chart.docs(case)
    hpas = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in chart.of_kind(documents, "HorizontalPodAutoscaler")}
    for deployment in chart.of_kind(documents, "Deployment"):
        name = deployment["metadata"]["name"]
        if name in hpas:
            # A first install starts at the HPA's floor (without `replicas`, at 1 until the HPA's
            # first sync); upgrades keep the live count (a `lookup`, empty when rendered offline).
            assert deployment["spec"]["replicas"] == hpas[name]["spec"]["minReplicas"], name
    for hpa in chart.of_kind(documents, "HorizontalPodAutoscaler"):
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
        assert hpa["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("case", CASES)
def test_every_deployment_has_a_disruption_budget_that_lets_drains_finish(case):
    documents = chart.docs(case)
    budgets = chart.of_kind(documents, "PodDisruptionBudget")
    for deployment in chart.of_kind(documents, "Deployment"):
        (budget,) = [
            b for b in budgets if chart.selects(b["spec"]["selector"]["matchLabels"], chart.pod_labels(deployment))
        ]
        floor = deployment["spec"].get("replicas") or next(
            h["spec"]["minReplicas"] for h in chart.of_kind(documents, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"])
        assert budget["spec"]["minAvailable"] < floor, "a budget equal to the replica count blocks every drain"
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_config_changes_roll_exactly_the_pods_that_read_them():
    def templates(values):
        documents = chart.of_kind(chart.parse(chart.render(chart.CHART, values)), "Deployment")
        return {d["metadata"]["name"]: d["spec"]["template"] for d in documents}

    def checksum(template, name):
        return template["metadata"].get("annotations", {}).get(name)

    gateway, nginx, inference = "modelserver-gateway", "modelserver-nginx", "modelserver-inference-digits"
    base = templates({})
    canary = templates(
        {"inference": {"models": {"digits": {"canary": {"enabled": True, "weights": {"1": 90, "2": 10}}}}}}
    )
    keys = templates({"gateway": {"apiKeys": {"enabled": True, "keys": ["k"]}}})
    rotated = templates({"gateway": {"apiKeys": {"enabled": True, "keys": ["k2"]}}})
    body = templates({"nginx": {"clientMaxBodySize": "16m"}})

    assert checksum(base[gateway], "checksum/routes") != checksum(canary[gateway], "checksum/routes")
    assert base[nginx] == canary[nginx] and base[inference] == canary[inference]
    assert checksum(keys[gateway], "checksum/api-keys") != checksum(rotated[gateway], "checksum/api-keys")
    assert checksum(base[nginx], "checksum/config") != checksum(body[nginx], "checksum/config")
    assert base[gateway] == body[gateway] and base[inference] == body[inference]


@pytest.mark.parametrize("case", CASES)
def test_the_serviceaccount_mounts_no_token(case):
    for account in chart.of_kind(chart.docs(case), "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def requested(case):
    """(CPU millis, memory MiB) the release requests at its floor, and during an upgrade that
    rolls every Deployment at once (maxSurge 1: one extra pod each)."""
    def mebibytes(quantity):
        text = str(quantity)
        return int(text[:-2]) * 1024 if text.endswith("Gi") else int(text[:-2])

    floor, surge = [0, 0], [0, 0]
    for deployment in chart.of_kind(chart.docs(case), "Deployment"):
        cpu = sum(chart.cpu_millis(c["resources"]["requests"]["cpu"]) for c in chart.containers(deployment))
        memory = sum(mebibytes(c["resources"]["requests"]["memory"]) for c in chart.containers(deployment))
        replicas = deployment["spec"]["replicas"]
        floor[0] += cpu * replicas
        floor[1] += memory * replicas
        surge[0] += cpu
        surge[1] += memory
    return floor, [floor[0] + surge[0], floor[1] + surge[1]]


def described(requests):
    cpu, memory = requests
    return f"{cpu / 1000:g} CPUs and {memory / 1024:.1f} GiB"


def test_the_readme_states_what_the_defaults_and_the_small_cluster_values_request():
    """The minimum cluster the README documents is the one the chart asks for."""
    readme = " ".join((chart.REPO / "README.md").read_text().split())
    for case in ("defaults", "small-cluster"):
        floor, upgrade = requested(case)
        assert f"{described(floor)}, and {described(upgrade)} while an upgrade" in readme, (case, floor, upgrade)
    # the small-cluster values fit one 2-CPU, 4 GiB node with room for the cluster's own pods
    floor, upgrade = requested("small-cluster")
    assert upgrade[0] <= 1300 and upgrade[1] <= 2048
    # and they are the README's first Kubernetes example
    kubernetes = readme.split("## Kubernetes", 1)[1]
    assert kubernetes.index("-f k8s/small-cluster-values.yaml") < kubernetes.index("helm test")
