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
def test_every_long_running_container_has_all_three_probes_on_http(case):
    for deployment, container in chart.workloads(chart.docs(case)):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "httpGet" in container.get(probe, {}), f"{deployment['metadata']['name']}: {probe}"
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
            assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: unpinned image {container['image']}"


@pytest.mark.parametrize("case", CASES)
def test_writable_paths_are_emptydirs_and_gunicorn_heartbeats_on_tmpfs(case):
    for deployment, container in chart.workloads(chart.docs(case)):
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"] and mounts["/tmp"]["emptyDir"]["sizeLimit"]
        if container["name"] in DRAIN_ENV:  # Gunicorn: worker_tmp_dir = /dev/shm
            assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"
        for path, volume in mounts.items():
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


@pytest.mark.parametrize("case", CASES)
def test_grace_period_covers_the_pause_and_the_drain(case):
    """SIGKILL comes terminationGracePeriodSeconds after the pod starts terminating, preStop included."""
    documents = chart.docs(case)
    upstream_read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", chart.nginx_conf(documents))[1])
    for deployment, container in chart.workloads(documents):
        pod = deployment["spec"]["template"]["spec"]
        pre_stop = container["lifecycle"]["preStop"]
        if "sleep" in pre_stop:
            pause = pre_stop["sleep"]["seconds"]
        else:
            command = pre_stop["exec"]["command"]
            assert command[0] == "/bin/sleep", command  # exec form: no shell, the image's sleep
            pause = int(command[1])
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
    for deployment, container in chart.workloads(documents):
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
            assert set(match_labels) == SELECTOR_LABELS, f"{doc['kind']} {doc['metadata']['name']}: {match_labels}"
    for deployment in chart.of_kind(chart.docs(case), "Deployment"):
        # Not helm.sh/chart on pods: a chart-only upgrade would restart every pod.
        assert set(chart.pod_labels(deployment)) == STANDARD_LABELS


@pytest.mark.parametrize("case", CASES)
def test_autoscaled_deployments_leave_replicas_to_the_hpa(case):
    documents = chart.docs(case)
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in chart.of_kind(documents, "HorizontalPodAutoscaler")}
    for deployment in chart.of_kind(documents, "Deployment"):
        name = deployment["metadata"]["name"]
        # With both, every `helm upgrade` would reset the replica count the HPA chose.
        assert ("replicas" in deployment["spec"]) != (name in scaled), name
    for hpa in chart.of_kind(documents, "HorizontalPodAutoscaler"):
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] < behavior["scaleDown"]["stabilizationWindowSeconds"]
        assert hpa["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("case", CASES)
def test_every_deployment_has_a_disruption_budget_that_lets_drains_finish(case):
    documents = chart.docs(case)
    budgets = chart.of_kind(documents, "PodDisruptionBudget")
    for deployment in chart.of_kind(documents, "Deployment"):
        (budget,) = [b for b in budgets if chart.selects(b["spec"]["selector"]["matchLabels"], chart.pod_labels(deployment))]
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
    canary = templates({"inference": {"models": {"digits": {"canary": {"enabled": True, "weights": {"1": 90, "2": 10}}}}}})
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
