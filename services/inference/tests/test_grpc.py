"""gRPC in the inference service for real: Gunicorn workers sharing one port, real TF models, and
the clients users have: tensorflow-serving-api's stubs, tritonclient.grpc, perf_analyzer -i grpc."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench import perf_analyzer
from stack.load import Threads
from tests.support import models, reporting
from tests.support.servers import connections_by_worker, free_port, start_inference

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
triton = pytest.importorskip("tritonclient.grpc")
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

WORKERS = 2


def start(root: Path, log: Path, env: dict[str, str] | None = None):
    """A real inference server with gRPC on; -> (process, HTTP url, gRPC target)."""
    process, url = start_inference(root, log, env={
        "INFERENCE_WORKERS": str(WORKERS), "INFERENCE_GRPC_BIND": f"127.0.0.1:{free_port()}", **(env or {}),
    })
    port = requests.get(f"{url}/readyz").json()["grpc_port"]
    return process, url, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits_version, multi_version):
    root = tmp_path_factory.mktemp("grpc") / "models"
    models.copy_version(digits_version, root, "digits", 1)
    models.copy_version(multi_version, root, "multi", 1)
    process, url, target = start(root, root.parent / "server.log")
    yield process, url, target
    assert process.stop() == 0, process.log_tail()


@pytest.fixture(scope="module")
def channel(served):
    with grpc.insecure_channel(served[2]) as channel:
        yield channel


@pytest.fixture(scope="module")
def reference(digits_version):
    import keras

    model = keras.saving.load_model(digits_version / "model.keras", safe_mode=True)
    return lambda x: model.predict(x, verbose=0)


def predict_request(x: np.ndarray, name: str = "digits", version: int | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(x))
    return request


def rest_predictions(url: str, x: np.ndarray) -> np.ndarray:
    response = requests.post(f"{url}/v1/models/digits:predict", json={"instances": x.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"], dtype=np.float32)


# -- TensorFlow Serving's API, through tensorflow-serving-api's stubs ----------------------------


def test_tfs_predict_metadata_and_status(served, channel, digits_data, reference):
    _, url, _ = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    x = digits_data[0][:7]
    response, call = stub.Predict.with_call(predict_request(x), timeout=30, metadata=(("x-request-id", "tfs-1"),))
    got = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(got, reference(x), atol=1e-5)
    np.testing.assert_allclose(got, rest_predictions(url, x), atol=1e-6)
    assert (response.model_spec.name, response.model_spec.version.value) == ("digits", 1)
    assert response.model_spec.signature_name == "serving_default"
    echoed = ("x-request-id", "tfs-1")
    assert echoed in call.initial_metadata() and echoed in call.trailing_metadata()
    pinned = stub.Predict(predict_request(x, version=1), timeout=30)
    np.testing.assert_array_equal(tf.make_ndarray(pinned.outputs["probabilities"]), got)

    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "digits"
    meta = stub.GetModelMetadata(meta_request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(signatures)
    pixels = signatures.signature_def["serving_default"].inputs["pixels"]
    rest = requests.get(f"{url}/v1/models/digits/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert pixels.name == rest["serving_default"]["inputs"]["pixels"]["name"]
    assert [d.size for d in pixels.tensor_shape.dim] == [-1, 8, 8, 1]
    assert pixels.dtype == tf.float32.as_datatype_enum

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status = status_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "digits"}))
    [version] = status.model_version_status
    assert version.version == 1 and version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0 and version.status.error_message == ""


def test_tfs_multi_input_typed_values_and_output_filter(served, channel):
    _, url, _ = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    ids, flags, scale = [[1, 2, 3], [4, 5, 6]], [[True, False], [False, True]], [[0.5, 1.5], [2.0, -1.0]]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi"
    # Typed values (int64_val, bool_val, double_val) rather than tensor_content.
    for key, value, dtype, field in (
        ("ids", ids, tf.int64, "int64_val"), ("flags", flags, tf.bool, "bool_val"),
        ("scale", scale, tf.float64, "double_val"),
    ):
        proto = request.inputs[key]
        proto.dtype = dtype.as_datatype_enum
        proto.tensor_shape.CopyFrom(tf.TensorShape(np.shape(value)).as_proto())
        getattr(proto, field).extend(np.ravel(value).tolist())
    request.output_filter.append("score")
    response = stub.Predict(request, timeout=30)
    assert set(response.outputs) == {"score"}
    columns = {"ids": ids, "flags": flags, "scale": scale}
    rest = requests.post(f"{url}/v1/models/multi:predict", json={"inputs": columns})
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["score"]), rest.json()["outputs"]["score"], atol=1e-12)


# -- The Open Inference Protocol, through tritonclient.grpc --------------------------------------


def test_tritonclient_grpc(served, digits_data, reference):
    _, url, target = served
    client = triton.InferenceServerClient(url=target)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    meta = client.get_model_metadata("digits", as_json=True)
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "8", "8", "1"]}]
    assert meta == client.get_model_metadata("digits", "1", as_json=True)
    config = client.get_model_config("digits", as_json=True)["config"]  # protobuf JSON: int64 as text
    rest = requests.get(f"{url}/v2/models/digits/config").json()
    assert config["name"] == rest["name"] and config["max_batch_size"] == rest["max_batch_size"] == 64
    assert config["input"][0]["dims"] == [str(d) for d in rest["input"][0]["dims"]] == ["8", "8", "1"]
    assert config["output"][0]["name"] == rest["output"][0]["name"] == "probabilities"
    assert client.get_server_metadata(as_json=True)["extensions"] == [
        "binary_tensor_data", "model_configuration", "statistics", "model_repository"]
    x = digits_data[0][:5]
    for version in ("", "1"):
        tensor = triton.InferInput("pixels", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("digits", [tensor], model_version=version, request_id=f"req-{version}")
        got = result.as_numpy("probabilities")
        np.testing.assert_allclose(got, reference(x), atol=1e-5)
        np.testing.assert_allclose(got, rest_predictions(url, x), atol=1e-6)
        assert result.get_response().id == f"req-{version}" and result.get_response().model_version == "1"
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "digits", "version": "1", "state": "READY"} in index
    stats = client.get_inference_statistics("digits", as_json=True)["model_stats"][0]
    assert int(stats["inference_stats"]["success"]["count"]) >= 2
    with pytest.raises(triton.InferenceServerException, match="not found"):
        client.get_model_metadata("nope")
    client.close()


def test_v2_typed_contents_and_raw_contents_agree_with_rest(served, channel):
    _, url, _ = served
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    ids = np.array([[1, 2, 3], [9, 0, 4]], dtype=np.int64)
    flags = np.array([[True, False], [True, True]])
    scale = np.array([[0.5, 1.5], [2.0, -1.0]])
    typed = service_pb2.ModelInferRequest(model_name="multi", id="typed")
    for name, array, datatype, field in (
        ("ids", ids, "INT64", "int64_contents"), ("flags", flags, "BOOL", "bool_contents"),
        ("scale", scale, "FP64", "fp64_contents"),
    ):
        tensor = typed.inputs.add(name=name, datatype=datatype, shape=array.shape)
        getattr(tensor.contents, field).extend(array.reshape(-1).tolist())
    answer = stub.ModelInfer(typed, timeout=30)
    assert not answer.raw_output_contents and answer.id == "typed"
    outputs = {o.name: o for o in answer.outputs}
    emb = np.array(outputs["emb"].contents.fp32_contents).reshape(list(outputs["emb"].shape))
    score = np.array(outputs["score"].contents.fp64_contents).reshape(list(outputs["score"].shape))

    raw = service_pb2.ModelInferRequest(model_name="multi", model_version="1")
    for name, array, datatype in (("ids", ids, "INT64"), ("flags", flags, "BOOL"), ("scale", scale, "FP64")):
        raw.inputs.add(name=name, datatype=datatype, shape=array.shape)
        raw.raw_input_contents.append(array.tobytes())
    raw.outputs.add(name="score")
    raw_answer = stub.ModelInfer(raw, timeout=30)
    assert [o.name for o in raw_answer.outputs] == ["score"]
    np.testing.assert_array_equal(np.frombuffer(raw_answer.raw_output_contents[0], "<f8").reshape(2, 1), score)

    rest = requests.post(f"{url}/v2/models/multi/infer", json={"inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [2, 3], "data": ids.reshape(-1).tolist()},
        {"name": "flags", "datatype": "BOOL", "shape": [2, 2], "data": flags.reshape(-1).tolist()},
        {"name": "scale", "datatype": "FP64", "shape": [2, 2], "data": scale.reshape(-1).tolist()},
    ]}).json()
    by_name = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in rest["outputs"]}
    np.testing.assert_allclose(emb, by_name["emb"], atol=1e-6)
    np.testing.assert_allclose(score, by_name["score"], atol=1e-12)


# -- Bad input: the right code, and the server keeps serving -------------------------------------


def _tfs(x=None, **changes):
    request = predict_request(np.zeros((1, 8, 8, 1), np.float32) if x is None else x)
    for key, value in changes.items():
        if key == "name":
            request.model_spec.name = value
        elif key == "version":
            request.model_spec.version.value = value
        elif key == "tensor":
            request.inputs["pixels"].CopyFrom(value)
        elif key == "extra":
            request.inputs["other"].CopyFrom(value)
    return request


def _huge_tensor():
    proto = tf.make_tensor_proto(0.5, dtype=tf.float32)  # one float_val that TF would repeat
    proto.tensor_shape.CopyFrom(tf.TensorShape([10**9, 8, 8, 1]).as_proto())
    return proto


def _v2(shape=(1, 8, 8, 1), datatype="FP32", raw=None, name="digits", version=""):
    request = service_pb2.ModelInferRequest(model_name=name, model_version=version)
    request.inputs.add(name="pixels", datatype=datatype, shape=shape)
    request.raw_input_contents.append(np.zeros(64, np.float32).tobytes() if raw is None else raw)
    return request


TFS_BAD = {
    "wrong dtype": (
        _tfs(tensor=tf.make_tensor_proto([b"a"] * 64, shape=[1, 8, 8, 1])), "INVALID_ARGUMENT", "takes numbers"),
    "shape mismatch": (_tfs(np.zeros((2, 8, 8), np.float32)), "INVALID_ARGUMENT", "expects shape"),
    "unknown model": (_tfs(name="nope"), "NOT_FOUND", "not found"),
    "unknown version": (_tfs(version=7), "NOT_FOUND", "version 7"),
    "unknown input": (_tfs(extra=tf.make_tensor_proto([1.0])), "INVALID_ARGUMENT", "unknown"),
    "huge declared shape": (_tfs(tensor=_huge_tensor()), "INVALID_ARGUMENT", "holds"),
}
V2_BAD = {
    "wrong dtype": (_v2(datatype="BYTES"), "INVALID_ARGUMENT", "takes numbers"),
    "unknown datatype": (_v2(datatype="FP99"), "INVALID_ARGUMENT", "unknown datatype"),
    "shape mismatch": (_v2(shape=(1, 64)), "INVALID_ARGUMENT", "expects shape"),
    "raw shorter than its shape": (_v2(shape=(2, 8, 8, 1)), "INVALID_ARGUMENT", "needs 512 bytes"),
    "huge declared shape": (_v2(shape=(10**12, 8, 8, 1)), "INVALID_ARGUMENT", "needs"),
    "unknown model": (_v2(name="nope"), "NOT_FOUND", "not found"),
    "unknown version": (_v2(version="7"), "NOT_FOUND", "version 7"),
    "version not a number": (_v2(version="latest"), "NOT_FOUND", "versions are integers"),
}


@pytest.mark.parametrize("case", list(TFS_BAD))
def test_tfs_bad_input_gets_its_code_and_the_server_keeps_serving(channel, case):
    request, code, fragment = TFS_BAD[case]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Predict(request, timeout=30)
    assert failure.value.code() == grpc.StatusCode[code], failure.value.details()
    assert fragment in failure.value.details()
    assert stub.Predict(_tfs(), timeout=30).outputs["probabilities"].tensor_content


@pytest.mark.parametrize("case", list(V2_BAD))
def test_v2_bad_input_gets_its_code_and_the_server_keeps_serving(channel, case):
    request, code, fragment = V2_BAD[case]
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(request, timeout=30)
    assert failure.value.code() == grpc.StatusCode[code], failure.value.details()
    assert fragment in failure.value.details()
    assert stub.ModelInfer(_v2(), timeout=30).raw_output_contents


def test_a_message_over_the_body_limit_is_resource_exhausted(channel):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    rows = 9 * 1024 * 1024 // 256 + 1  # just over the 8 MiB INFERENCE_MAX_BODY_BYTES
    big = _v2(shape=(rows, 8, 8, 1), raw=np.zeros(rows * 64, np.float32).tobytes())
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(big, timeout=30)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(_v2(), timeout=30).raw_output_contents


def test_health_service_and_readyz_port(served, channel):
    _, url, target = served
    assert requests.get(f"{url}/readyz").json()["grpc_port"] == int(target.rpartition(":")[2])
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "inference.GRPCInferenceService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as failure:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_perf_analyzer_over_grpc(served, request):
    _, _, target = served
    assert perf_analyzer.BINARY.exists(), "perf_analyzer is missing: `make setup` installs it"
    argv = [str(perf_analyzer.BINARY), "-m", "digits", "-u", target, "-i", "grpc", "--concurrency-range", "1:2",
            "--measurement-interval", "800", "--stability-percentage", "50", "--max-trials", "6"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    points = re.findall(r"Concurrency: (\d+), throughput: ([\d.]+) infer/sec, latency (\d+) usec", run.stdout)
    assert {int(c) for c, _, _ in points} == {1, 2}, run.stdout[-2000:]
    assert re.search(r"Server:\s+Inference count: [1-9]", run.stdout), run.stdout[-2000:]
    reporting.figure(request, "perf_analyzer, digits over gRPC: " + ", ".join(
        f"c={c} {float(t):.0f} infer/s {int(lat) / 1000:.1f} ms" for c, t, lat in points))


# -- One batcher for both transports; ids, traces, shedding, draining -----------------------------


def _metric(url: str, name: str) -> list:
    families = text_string_to_metric_families(requests.get(f"{url}/metrics").text)
    return [s for f in families for s in f.samples if s.name == name]


def test_grpc_and_http_requests_share_batches_each_gets_its_rows(model_root, tmp_path, digits_data, reference):
    drain = tmp_path / "drain"
    process, url, target = start(model_root, tmp_path / "server.log", {
        "INFERENCE_WORKERS": "1", "INFERENCE_MAX_LATENCY_MS": "400", "INFERENCE_MAX_QUEUE_ROWS": "64",
        "INFERENCE_ACCESS_LOG": "true", "INFERENCE_DRAIN_FILE": str(drain), "INFERENCE_REPOSITORY_CONTROL": "off",
    })
    try:
        x = digits_data[0]
        per_transport = 4
        barrier = threading.Barrier(2 * per_transport)
        answers: dict[tuple[str, int], np.ndarray] = {}
        client = triton.InferenceServerClient(url=target)

        def over_grpc(i: int) -> None:
            rows = x[i * 3 : i * 3 + 1 + i % 3]
            tensor = triton.InferInput("pixels", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows)
            barrier.wait()
            answers["grpc", i] = client.infer("digits", [tensor]).as_numpy("probabilities")

        def over_http(i: int) -> None:
            rows = x[100 + i * 3 : 100 + i * 3 + 1 + i % 3]
            barrier.wait()
            answers["http", i] = rest_predictions(url, rows)

        threads = [threading.Thread(target=f, args=(i,)) for i in range(per_transport) for f in (over_grpc, over_http)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(per_transport):
            np.testing.assert_allclose(answers["grpc", i], reference(x[i * 3 : i * 3 + 1 + i % 3]), atol=1e-5)
            np.testing.assert_allclose(answers["http", i], reference(x[100 + i * 3 : 100 + i * 3 + 1 + i % 3]),
                                       atol=1e-5)
        # A batch of more requests than one transport sent: gRPC and HTTP calls in one model call.
        buckets = {s.labels["le"]: s.value for s in _metric(url, "modelserver_batch_requests_bucket")}
        assert buckets["4.0"] < buckets["+Inf"], buckets
        protocols = Counter()
        for sample in _metric(url, "modelserver_requests_total"):
            protocols[sample.labels["protocol"], sample.labels["status"]] += sample.value
        assert protocols["v2_grpc", "200"] == per_transport and protocols["tfs", "200"] == per_transport

        # Shed load: UNAVAILABLE with a retry hint, counted as shed (65 rows > the 64 queue rows).
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(target))
        before = sum(s.value for s in _metric(url, "modelserver_load_shed_total"))
        with pytest.raises(grpc.RpcError) as shed:
            stub.ModelInfer(_v2(shape=(65, 8, 8, 1), raw=np.zeros(65 * 64, np.float32).tobytes()), timeout=30)
        assert shed.value.code() == grpc.StatusCode.UNAVAILABLE and "overloaded" in shed.value.details()
        trailers = dict(shed.value.trailing_metadata())
        assert trailers["retry-after"] == "1" and trailers["grpc-retry-pushback-ms"] == "1000"
        assert sum(s.value for s in _metric(url, "modelserver_load_shed_total")) == before + 1

        # Model control switched off: PERMISSION_DENIED, as HTTP's 403.
        with pytest.raises(grpc.RpcError) as denied:
            stub.RepositoryModelUnload(service_pb2.RepositoryModelUnloadRequest(model_name="digits"), timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "REPOSITORY_CONTROL=off" in denied.value.details()

        # Request ids and the caller's trace, as over HTTP.
        trace = "0af7651916cd43dd8448eb211c80319c"
        _, call = stub.ModelInfer.with_call(_v2(), timeout=30, metadata=(
            ("x-request-id", "grpc-req-1"), ("traceparent", f"00-{trace}-b7ad6b7169203331-01")))
        assert dict(call.initial_metadata())["x-request-id"] == "grpc-req-1"
        _, call = stub.ModelInfer.with_call(_v2(), timeout=30, metadata=(("x-request-id", "not safe; " * 20),))
        assert re.fullmatch(r"[0-9a-f]{32}", dict(call.trailing_metadata())["x-request-id"])
        deadline = time.monotonic() + 5
        while "grpc-req-1" not in process.log_tail(50) and time.monotonic() < deadline:
            time.sleep(0.1)
        line = next(line for line in process.log_tail(50).splitlines() if "grpc-req-1" in line)
        assert trace in line and "/inference.GRPCInferenceService/ModelInfer" in line

        # The pod's drain announced: not ready (health, ServerReady), still serving.
        drain.touch()
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and health.Check(health_pb2.HealthCheckRequest()).status == 1:
            time.sleep(0.1)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not client.is_server_ready()
        assert stub.ModelInfer(_v2(), timeout=30).raw_output_contents
        client.close()
    finally:
        assert process.stop() == 0, process.log_tail()


# -- Under load: a live upgrade loses no call; a killed worker's peers keep serving --------------


class GrpcLoad:
    """``concurrency`` threads (``stack.load.Threads``), each on its own channel (so the kernel
    spreads them over the workers), calling ModelInfer until stopped; a call that fails
    UNAVAILABLE is retried once on a new connection that waits to be ready, as the gateway's
    retry does (the old channel may still hold the dead worker's connection, or back off)."""

    def __init__(self, target: str, concurrency: int = 6, max_seconds: float = 90) -> None:
        self.target = target
        self.versions: Counter = Counter()
        self.first_failures: Counter = Counter()
        self.failures: Counter = Counter()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._threads = Threads(self._step, concurrency=concurrency, max_seconds=max_seconds)

    def __enter__(self) -> GrpcLoad:
        self._threads.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._threads.stop()

    def _stub(self, fresh: bool = False):
        if fresh or getattr(self._local, "channel", None) is None:
            if getattr(self._local, "channel", None) is not None:
                self._local.channel.close()
            self._local.channel = grpc.insecure_channel(self.target)
            self._local.stub = service_pb2_grpc.GRPCInferenceServiceStub(self._local.channel)
        return self._local.stub

    def _step(self, _session, _rng) -> None:
        try:
            answer = self._stub().ModelInfer(_v2(), timeout=30)
        except grpc.RpcError as error:
            self._count(self.first_failures, error.code().name)
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                self._count(self.failures, error.code().name)
                return
            try:
                answer = self._stub(fresh=True).ModelInfer(_v2(), timeout=30, wait_for_ready=True)
            except grpc.RpcError as again:
                self._count(self.failures, again.code().name)
                return
        self._count(self.versions, answer.model_version)

    def _count(self, counter: Counter, key: str) -> None:
        with self._lock:
            counter[key] += 1

    def served(self) -> int:
        return sum(self.versions.values())

    def wait_for(self, calls: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.served() < calls and time.monotonic() < deadline:
            time.sleep(0.05)


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_live_upgrade_and_a_killed_worker_under_grpc_load(model_root, digits_version, tmp_path, request):
    process, url, target = start(model_root, tmp_path / "server.log")
    try:
        with GrpcLoad(target) as load:
            load.wait_for(100)
            models.copy_version(digits_version, model_root, "digits", 2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until both workers answer with version 2 only
                seen = load.versions.copy()
                time.sleep(1.5)
                if load.versions["1"] == seen["1"] and load.versions["2"] > seen["2"]:
                    break
            assert load.versions["1"] > 0 and load.versions["2"] > 0, load.versions
            assert not load.first_failures and not load.failures, (load.first_failures, load.failures)

            # The worker holding the most gRPC connections (each thread has its own).
            held = connections_by_worker(process.pid, int(target.rpartition(":")[2]))
            victim = max(held, key=held.get)
            assert held[victim] > 0, held
            before = load.served()
            os.kill(victim, signal.SIGKILL)
            load.wait_for(before + 300, timeout=60)
            served_after = load.served() - before
        assert served_after >= 300, (served_after, load.first_failures, load.failures)
        # The killed worker's calls failed UNAVAILABLE and their one retry found a live worker.
        assert set(load.first_failures) <= {"UNAVAILABLE"}, load.first_failures
        assert not load.failures, load.failures
        reporting.figure(request, f"a worker killed under gRPC load: {served_after} calls served after it, "
                                  f"{sum(load.first_failures.values())} retried once, none lost")
        # Gunicorn's replacement worker joins the same port.
        deadline = time.monotonic() + 60
        while len(_workers(process.pid)) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert victim not in _workers(process.pid) and len(_workers(process.pid)) == WORKERS
    finally:
        process.stop()


def test_a_call_that_waited_past_the_budget_for_a_thread_is_shed_with_a_retry_hint(model_root, tmp_path):
    """Its wait in gRPC's pool counts, as an HTTP request's wait for a thread does: a Health
    Watch stream holds the worker's only thread while a ModelInfer call queues behind it."""
    budget_ms = 200
    process, url, target = start(model_root, tmp_path / "server.log", {
        "INFERENCE_WORKERS": "1", "INFERENCE_THREADS": "1", "INFERENCE_QUEUE_BUDGET_MS": str(budget_ms),
    })
    try:
        channel = grpc.insecure_channel(target)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(_v2(), timeout=30)  # served while the thread is free
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING  # the stream holds the thread
        queued = stub.ModelInfer.future(_v2(), timeout=30)
        time.sleep(3 * budget_ms / 1000)
        watch.cancel()  # the stream ends within Health.WATCH_EVERY; the queued call then starts
        with pytest.raises(grpc.RpcError) as shed:
            queued.result()
        assert shed.value.code() == grpc.StatusCode.UNAVAILABLE, shed.value.details()
        assert "for a worker thread" in shed.value.details()
        assert dict(shed.value.trailing_metadata())["retry-after"] == "1"
        assert sum(s.value for s in _metric(url, "modelserver_load_shed_total")) == 1
        stub.ModelInfer(_v2(), timeout=30)  # and the next one is served
    finally:
        assert process.stop() == 0, process.log_tail()
