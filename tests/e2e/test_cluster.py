"""Cluster-only end-to-end cases: what the stack must survive while Kubernetes moves pods.

They need a cluster with the chart installed (`make e2e` sets everything up on kind):
  E2E_KUBE_CONTEXT   kube context of the cluster (required; without it these tests are skipped)
  E2E_BASE_URL       nginx as a client reaches it (default http://127.0.0.1:30080, kind's mapping)
  E2E_NAMESPACE      namespace of the release (default modelserver-e2e)
  E2E_RELEASE        release name (default modelserver)
  E2E_MODEL          model to send predictions to (default digits)
  E2E_GRPC_ADDRESS   nginx's gRPC port as a client reaches it, host:port (the gRPC cases
                     are skipped without it)
The load is bounded in requests and seconds and goes only to E2E_BASE_URL and E2E_GRPC_ADDRESS.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import requests

from stack.load import Load

CONTEXT = os.environ.get("E2E_KUBE_CONTEXT", "")
BASE_URL = os.environ.get("E2E_BASE_URL", "http://127.0.0.1:30080").rstrip("/")
NAMESPACE = os.environ.get("E2E_NAMESPACE", "modelserver-e2e")
RELEASE = os.environ.get("E2E_RELEASE", "modelserver")
MODEL = os.environ.get("E2E_MODEL", "digits")
GRPC_ADDRESS = os.environ.get("E2E_GRPC_ADDRESS", "")
DIGIT = (Path(__file__).resolve().parents[2] / "examples/digit-0.json").read_bytes()

pytestmark = pytest.mark.skipif(
    not CONTEXT, reason="cluster-only: set E2E_KUBE_CONTEXT to a cluster running the chart (make e2e does)"
)


class Cluster:
    """The few Kubernetes API calls these tests make, through the official client."""

    def __init__(self, context: str) -> None:
        from kubernetes import client, config, watch

        config.load_kube_config(context=context)
        self.apps = client.AppsV1Api()
        self.core = client.CoreV1Api()
        self.autoscaling = client.AutoscalingV2Api()
        self._watch = watch.Watch

    def deployment(self, component: str):
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        (deployment,) = self.apps.list_namespaced_deployment(NAMESPACE, label_selector=selector).items
        return deployment

    def pods(self, deployment) -> list:
        labels = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=labels).items

    def wait_rolled_out(self, name: str, timeout: float = 600) -> None:
        """Watch the Deployment until every replica is updated and available and no old one is left."""
        deadline = time.monotonic() + timeout
        stream = self._watch().stream(self.apps.list_namespaced_deployment, NAMESPACE,
                                      field_selector=f"metadata.name={name}", timeout_seconds=int(timeout))
        for event in stream:
            d = event["object"]
            wanted = d.spec.replicas or 0
            status = d.status
            if ((status.observed_generation or 0) >= d.metadata.generation
                    and (status.updated_replicas or 0) == wanted == (status.available_replicas or 0)
                    and (status.replicas or 0) == wanted):
                return
            if time.monotonic() > deadline:
                break
        raise TimeoutError(f"deployment {name} did not finish rolling out in {timeout}s")

    def serves_resource_metrics(self) -> bool:
        """Whether the cluster serves metrics.k8s.io (metrics-server): without it no HPA can scale."""
        from kubernetes import client

        groups = client.ApisApi().get_api_versions().groups or []
        return any(g.name == "metrics.k8s.io" for g in groups)

    def ready_pods(self, component: str) -> list:
        return [p for p in self.pods(self.deployment(component))
                if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]

    def metrics(self, pod) -> str:
        """A pod's /metrics through the API server's pod proxy (nginx does not serve it)."""
        port = pod.spec.containers[0].ports[0].container_port
        return self.core.connect_get_namespaced_pod_proxy_with_path(f"{pod.metadata.name}:{port}", NAMESPACE, "metrics")

    def restart(self, component: str) -> str:
        """What `kubectl rollout restart` does: a new pod template, the same spec otherwise."""
        name = self.deployment(component).metadata.name
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        self.apps.patch_namespaced_deployment(name, NAMESPACE, patch)
        return name

    def wait_replaced(self, deployment_name: str, old_pods: set[str], timeout: float = 600) -> None:
        """The rollout done and every old pod gone: the last one is still in its preStop pause
        and drain when the Deployment reports the rollout complete, and its stop (nginx: SIGQUIT
        after the pause) is the moment a client could lose a request."""
        self.wait_rolled_out(deployment_name, timeout)
        for name in old_pods:
            self.wait_pod_gone(name, timeout)

    def wait_pod_gone(self, name: str, timeout: float = 300) -> None:
        listed = self.core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={name}")
        if not listed.items:
            return
        stream = self._watch().stream(self.core.list_namespaced_pod, NAMESPACE,
                                      field_selector=f"metadata.name={name}", timeout_seconds=int(timeout),
                                      resource_version=listed.metadata.resource_version)
        for event in stream:
            if event["type"] == "DELETED":
                return
        raise TimeoutError(f"pod {name} still there after {timeout}s")


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return Cluster(CONTEXT)


def predict(session: requests.Session) -> requests.Response:
    return session.post(f"{BASE_URL}/v1/models/{MODEL}:predict", data=DIGIT,
                        headers={"Content-Type": "application/json"}, timeout=30)


def http_load(concurrency: int, max_seconds: float) -> Load:
    """Clients that each keep one HTTP/1.1 connection open (requests.Session)."""
    return Load(predict, concurrency=concurrency, max_seconds=max_seconds)


def grpc_load(concurrency: int, max_seconds: float) -> Load:
    """Clients that each keep one channel (one HTTP/2 connection to an nginx pod) for all their
    calls, as a TF Serving client does with its PredictionServiceStub; no wait_for_ready, so a
    call the stack cannot take fails at once instead of waiting for a connection."""
    if not GRPC_ADDRESS:
        pytest.skip("set E2E_GRPC_ADDRESS (nginx's gRPC Service port, host:port) for the gRPC cases")
    import numpy as np

    from tests.support.grpc_clients import TFServing, load_send, predict_request

    request = predict_request(MODEL, np.asarray(json.loads(DIGIT)["instances"], dtype=np.float32))
    clients = threading.local()

    def call() -> int:
        if not hasattr(clients, "tfs"):
            clients.tfs = TFServing(GRPC_ADDRESS)
        return clients.tfs.predict(request).model_spec.version.value

    return Load(load_send(call), concurrency=concurrency, max_seconds=max_seconds)


LOADS = {"http": http_load, "grpc": grpc_load}


def assert_no_failures(load: Load, event: str = "") -> None:
    result = load.result
    assert result.total > 0
    if event:  # the figures, for the record (pytest -s shows them)
        latencies = sorted(result.latencies) or [0.0]
        print(f"\n{event}: {result.failures} failed of {result.total}; latency p99 "
              f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
              f"{dict(result.statuses)} {dict(result.errors)}")
    assert result.failures == 0, (
        f"{result.failures} of {result.total} failed: {dict(result.statuses)} {dict(result.errors)}"
    )


def test_the_stack_answers_through_nginx():
    response = predict(requests.Session())
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


@pytest.mark.timeout(900)
@pytest.mark.parametrize("protocol", LOADS)
def test_a_rolling_model_upgrade_under_load_fails_no_request(cluster, protocol):
    deployment = cluster.deployment(f"inference-{MODEL}")
    name = deployment.metadata.name
    old_pods = {pod.metadata.name for pod in cluster.pods(deployment)}
    with LOADS[protocol](4, 800) as load:
        load.wait_for(50)
        # A new pod template is what `helm upgrade --set inference.models.<m>.image.tag=<new>`
        # produces; an annotation makes the same rollout without needing a second image.
        patch = {"spec": {"template": {"metadata": {"annotations": {"e2e.modelserver.dev/rollout": str(time.time())}}}}}
        cluster.apps.patch_namespaced_deployment(name, NAMESPACE, patch)
        cluster.wait_replaced(name, old_pods)
        load.wait_for(load.result.total + 50)  # and traffic keeps flowing after it
    assert_no_failures(load, f"rollout of {name} ({protocol})")
    assert not old_pods & {pod.metadata.name for pod in cluster.pods(cluster.deployment(f"inference-{MODEL}"))}


# Load for the cases below: 8 clients that each keep one connection open (requests.Session),
# the clients that lost requests when an nginx pod stopped before keepalive_time was derived
# from the preStop pause.
KEEPALIVE_CLIENTS = 8


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol", LOADS)
@pytest.mark.parametrize("component", [f"inference-{MODEL}", "gateway", "nginx"])
def test_a_pod_deleted_under_load_fails_no_request(cluster, component, protocol):
    """A pod is deleted as a node drain or `kubectl delete pod` would: preStop pause, then drain.
    nginx included: during its pause it answers `Connection: close` to keep-alive connections
    older than keepalive_time, so none is still open on it when its graceful stop begins (over
    gRPC, keepalive_time ends an HTTP/2 connection with GOAWAY: the client's next call opens
    a new one, to a live pod)."""
    deployment = cluster.deployment(component)
    ready = cluster.ready_pods(component)
    assert len(ready) >= 2, "the chart runs at least two replicas"
    victim = ready[0].metadata.name
    with LOADS[protocol](KEEPALIVE_CLIENTS, 500) as load:
        load.wait_for(50)
        cluster.core.delete_namespaced_pod(victim, NAMESPACE)
        cluster.wait_pod_gone(victim)
        cluster.wait_rolled_out(deployment.metadata.name)
        load.wait_for(load.result.total + 50)
    assert_no_failures(load, f"{component} pod deleted ({protocol})")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("protocol", LOADS)
@pytest.mark.parametrize("component", ["nginx", "gateway"])
def test_a_rollout_restart_under_load_fails_no_request(cluster, component, protocol):
    """`kubectl rollout restart`: every pod replaced, one at a time, under keep-alive clients."""
    old = {p.metadata.name for p in cluster.pods(cluster.deployment(component))}
    with LOADS[protocol](KEEPALIVE_CLIENTS, 800) as load:
        load.wait_for(50)
        cluster.wait_replaced(cluster.restart(component), old)
        load.wait_for(load.result.total + 50)
    assert_no_failures(load, f"{component} rollout restart ({protocol})")
    assert not old & {p.metadata.name for p in cluster.pods(cluster.deployment(component))}


@pytest.mark.timeout(600)
def test_a_deleted_inference_pod_leaves_the_gateways_rotation_within_seconds(cluster):
    """At the start of its preStop pause the pod announces its drain (readiness 503); the
    gateway's 1 s probes take it out of rotation while it still serves, even though DNS may go
    on answering with its address (a default CoreDNS caches 30 s, the pause is 10 s)."""
    ready = cluster.ready_pods(f"inference-{MODEL}")
    assert len(ready) >= 2, "the chart runs at least two replicas"
    victim = ready[0]
    gateways = cluster.ready_pods("gateway")
    address = f"{victim.status.pod_ip}:{victim.spec.containers[0].ports[0].container_port}"
    label = f'modelserver_gateway_requests_total{{backend="{address}"'

    def sent_to_victim() -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for gateway in gateways
                   for line in cluster.metrics(gateway).splitlines() if line.startswith(label))

    with Load(predict, concurrency=KEEPALIVE_CLIENTS, max_seconds=500) as load:
        load.wait_for(200)
        assert sent_to_victim() > 0, "the gateway never used the pod"
        cluster.core.delete_namespaced_pod(victim.metadata.name, NAMESPACE)
        time.sleep(3)  # the kubelet starts the hook, the pod sees its file, the gateway probes
        settled = sent_to_victim()
        time.sleep(5)  # still inside the 10 s pause: the pod serves, DNS may still list it
        late = sent_to_victim() - settled
        cluster.wait_pod_gone(victim.metadata.name)
        cluster.wait_rolled_out(cluster.deployment(f"inference-{MODEL}").metadata.name)
        load.wait_for(load.result.total + 50)
    assert late == 0, f"the gateway sent {late:.0f} requests to the pod 3-8 s after its deletion"
    assert_no_failures(load, "inference pod deleted (rotation check)")


@pytest.mark.timeout(1200)
def test_the_hpa_scales_out_under_load_and_back(cluster):
    if not cluster.serves_resource_metrics():
        pytest.skip("the cluster serves no metrics.k8s.io API (no metrics-server): an HPA cannot scale there")
    name = cluster.deployment(f"inference-{MODEL}").metadata.name

    def hpa():
        return cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(name, NAMESPACE)

    floor = hpa().spec.min_replicas
    peak = floor
    with Load(predict, concurrency=16, max_seconds=480, max_requests=2_000_000) as load:
        deadline = time.monotonic() + 420
        while peak <= floor and time.monotonic() < deadline:
            time.sleep(5)
            peak = max(peak, hpa().status.current_replicas or 0)
    result = load.result
    conditions = [(c.type, c.status, c.reason) for c in (hpa().status.conditions or [])]
    assert peak > floor, f"no scale-out from {floor} under {result.total} requests; HPA conditions {conditions}"
    # Under overload the service may shed load (503 + Retry-After); it must never break.
    assert not result.errors and set(result.statuses) <= {200, 503}, (dict(result.statuses), dict(result.errors))
    assert result.statuses[200] > result.total * 0.9

    deadline = time.monotonic() + 600
    while (hpa().status.current_replicas or 0) > floor and time.monotonic() < deadline:
        time.sleep(10)
    assert hpa().status.current_replicas == floor, "did not scale back in after the load stopped"
