"""The real gateway's gRPC front door (Gunicorn, 2 workers) in front of real inference servers'
gRPC ports, driven by the stock clients: the canary's split, request ids, the access log and the
metrics, errors passed through, calls spread over a replica's workers, and a replica killed under
gRPC load costing no call."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.tests.conftest import address, stop_cleanly, write_routes
from services.gateway.tests.test_resilience import gateway_metric
from soak import procs
from stack.load import Load
from tests.support.grpc_clients import TFServing, label_of, load_send, predict_request, status_of
from tests.support.servers import connections_per_worker, free_port, start_gateway, start_inference

pytestmark = pytest.mark.slow

PIXELS = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8, 1)
WEIGHTS = {"1": 70, "2": 30}


def readyz(url: str) -> dict:
    return requests.get(f"{url}/readyz", timeout=10).json()


@pytest.fixture(scope="module")
def grpc_replicas(gateway_model_root: Path, tmp_path_factory):
    """Two inference servers with gRPC on: the first with 2 workers (to see calls spread over them)."""
    logs = tmp_path_factory.mktemp("grpc-replicas")
    ports = [free_port(), free_port()]

    def start(index: int):
        return start_inference(gateway_model_root, logs / f"inference-{index}.log", env={
            "INFERENCE_GRPC_BIND": f"127.0.0.1:{ports[index]}", "INFERENCE_WORKERS": str(2 - index)})

    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(start, range(2)))
    for (_, url), port in zip(started, ports, strict=True):
        assert readyz(url)["grpc_port"] == port  # what the gateway learns each replica's port from
    yield [(process, url, port) for (process, url), port in zip(started, ports, strict=True)]
    for process, _ in started:
        process.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def gateway(grpc_replicas, tmp_path_factory):
    here = tmp_path_factory.mktemp("grpc-gateway")
    routes = write_routes(here / "routes.yaml", {
        "digits": {"backends": [address(url) for _, url, _ in grpc_replicas], "versions": WEIGHTS},
    })
    grpc_port = free_port()
    process, url = start_gateway(routes, here / "gateway.log", env={
        "GATEWAY_GRPC_BIND": f"127.0.0.1:{grpc_port}", "GATEWAY_ACCESS_LOG": "1",
        "GATEWAY_MAX_BODY_BYTES": str(1024 * 1024),
    })
    yield url, f"127.0.0.1:{grpc_port}", process
    stop_cleanly(process)


def access_lines(process, request_id: str) -> list[dict]:
    lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if request_id in line]
    return [e for e in lines if e.get("logger") == "modelserver.gateway.access"]


def test_the_canary_splits_grpc_calls_by_weight_and_leaves_pinned_versions_alone(gateway):
    _, target, _ = gateway
    tfs = TFServing(target)
    v2 = triton.InferenceServerClient(target)
    pixels = triton.InferInput("pixels", list(PIXELS.shape), "FP32")
    pixels.set_data_from_numpy(PIXELS)
    calls = 200
    with ThreadPoolExecutor(8) as pool:
        tfs_versions = list(pool.map(
            lambda _: str(tfs.predict(predict_request("digits", PIXELS)).model_spec.version.value), range(calls)))
        v2_versions = list(pool.map(
            lambda _: v2.infer("digits", [pixels]).get_response().model_version, range(calls)))
    share = WEIGHTS["2"] / sum(WEIGHTS.values())
    bound = 4 * math.sqrt(share * (1 - share) / calls)  # 4 standard deviations of a binomial share
    for versions in (tfs_versions, v2_versions):
        assert set(versions) == {"1", "2"}
        assert abs(versions.count("2") / calls - share) < bound, versions.count("2")
    pinned = [tfs.predict(predict_request("digits", PIXELS, version=1)).model_spec.version.value for _ in range(20)]
    assert pinned == [1] * 20
    assert {v2.infer("digits", [pixels], model_version="2").get_response().model_version for _ in range(20)} == {"2"}


def test_request_ids_access_log_and_metrics_carry_the_grpc_call(gateway):
    url, target, process = gateway
    tfs = TFServing(target, metadata=[("x-request-id", "grpc-id-41")])
    response, call = tfs.predict_with_call(predict_request("digits", PIXELS, version=2))
    assert response.model_spec.version.value == 2
    assert dict(call.initial_metadata())["x-request-id"] == "grpc-id-41"
    generated = dict(TFServing(target).predict_with_call(predict_request("digits", PIXELS))[1].initial_metadata())
    assert len(generated["x-request-id"]) == 32
    time.sleep(0.2)
    (line,) = access_lines(process, "grpc-id-41")
    assert line["protocol"] == "grpc" and line["grpc_status"] == "OK" and line["status"] == 200
    assert line["path"] == "/tensorflow.serving.PredictionService/Predict"
    assert line["model"] == "digits" and line["version"] == "2" and line["backend"].startswith("127.0.0.1:")
    assert gateway_metric(url, 'modelserver_gateway_requests_total{backend="127.0.0.1:') > 0
    unrouted = 'modelserver_gateway_requests_total{backend="none",model="none",protocol="grpc",status="404"}'
    before = gateway_metric(url, unrouted)
    with pytest.raises(grpc.RpcError) as caught:
        tfs.predict(predict_request("unrouted", PIXELS))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert gateway_metric(url, unrouted) == before + 1


def test_errors_pass_through_with_their_codes_and_the_gateway_answers_probes(gateway):
    _, target, _ = gateway
    tfs = TFServing(target)
    with pytest.raises(grpc.RpcError) as caught:  # the replica's own verdict, passed through
        tfs.predict(predict_request("digits", PIXELS.reshape(1, 64)))
    code, message, _ = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message
    with pytest.raises(grpc.RpcError) as caught:  # over GATEWAY_MAX_BODY_BYTES (1 MiB)
        tfs.predict(predict_request("digits", np.zeros((5000, 8, 8, 1), dtype=np.float32)))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as caught:  # a method the gateway does not serve
        tfs.channel.unary_unary("/tensorflow.serving.PredictionService/Classify")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as caught:  # not a protobuf message
        tfs.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")(b"\x0a\x09abc", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    health = health_pb2_grpc.HealthStub(tfs.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    v2 = triton.InferenceServerClient(target)
    assert v2.is_server_live() and v2.is_server_ready() and v2.is_model_ready("digits")
    assert v2.get_server_metadata(as_json=True)["name"] == "modelserver"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_calls_reach_every_worker_of_a_replica(gateway, grpc_replicas):
    """The replica's workers share its gRPC port (SO_REUSEPORT), which spreads connections, not
    calls: the gateway's several channels per replica put calls on both of its workers."""
    _, target, _ = gateway
    process, _, port = grpc_replicas[0]
    workers = procs.children(process.pid)
    assert len(workers) == 2
    before = [cpu_seconds(w) for w in workers]
    tfs = TFServing(target)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: tfs.predict(predict_request("digits", PIXELS)), range(400)))
    connections = connections_per_worker(process.pid, port)
    used = [cpu_seconds(w) - b for w, b in zip(workers, before, strict=True)]
    assert len(connections) == 2 and min(connections) >= 1, connections
    assert min(used) > 0.05 * sum(used), f"CPU seconds per worker under the calls: {used}"


def test_a_replica_killed_under_grpc_load_costs_no_call(gateway_model_root, tmp_path):
    """One retry, on another replica, for UNAVAILABLE: the killed replica's calls in flight and
    its refused connections until the probes take it out."""
    grpc_ports = [free_port(), free_port()]
    started = [start_inference(gateway_model_root, tmp_path / f"inference-{i}.log",
                               env={"INFERENCE_GRPC_BIND": f"127.0.0.1:{grpc_ports[i]}"}) for i in range(2)]
    (survivor, survivor_url), (victim, victim_url) = started
    routes = write_routes(tmp_path / "routes.yaml", {
        "digits": {"backends": [address(survivor_url), address(victim_url)]}})
    grpc_port = free_port()
    gateway, url = start_gateway(routes, tmp_path / "gateway.log", env={"GATEWAY_GRPC_BIND": f"127.0.0.1:{grpc_port}"})
    try:
        tfs = TFServing(f"127.0.0.1:{grpc_port}")
        request = predict_request("digits", PIXELS)
        with Load(load_send(lambda: tfs.predict(request).model_spec.version.value), concurrency=8,
                  max_requests=3000, max_seconds=60, classify=label_of) as load:
            load.wait_for(200)
            assert gateway_metric(url, f'modelserver_gateway_requests_total{{backend="{address(victim_url)}"') > 0
            os.killpg(victim.pid, signal.SIGKILL)  # master and workers at once, as a node failure
            killed_at = load.result.total
            load.wait_for(killed_at + 400)
        result = load.result
        assert result.failures == 0, result.statuses
        assert result.total >= killed_at + 400
        assert gateway_metric(url, 'modelserver_gateway_retries_total{model="digits",reason="unavailable"}') >= 1
    finally:
        stop_cleanly(gateway)
        for process, _ in started:
            process.stop(signal.SIGKILL)
