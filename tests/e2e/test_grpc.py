"""The whole path over gRPC: client → nginx (HTTP/2) → gateway → inference replicas' gRPC ports.

The stock clients (tensorflow-serving-api's stubs, tritonclient.grpc) against nginx's gRPC port:
their answers equal the REST answers for the same rows; bad calls get the right status codes
and the stack keeps serving; a killed worker or replica and a live model upgrade under gRPC
load lose no call. Against a cluster, set ``E2E_GRPC_ADDRESS`` (nginx's grpc port, host:port)
beside ``E2E_BASE_URL``; tests that reach inside the stack run on the local one only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from soak import procs
from stack.load import Load
from tests.e2e.conftest import start_stack, wait_ready
from tests.support import models
from tests.support.grpc_clients import TFServing, label_of, load_send, only_output, predict_request, status_of
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5
KEY = "grpc-e2e-key-7c21"


@pytest.fixture(scope="module")
def grpc_address(stack):
    _, local = stack
    if local is not None:
        return local.grpc
    address = os.environ.get("E2E_GRPC_ADDRESS")
    if not address:
        pytest.skip("set E2E_GRPC_ADDRESS (nginx's gRPC port, host:port) to run the gRPC suite against a cluster")
    return address


@pytest.fixture(scope="module")
def tfs(grpc_address):
    client = TFServing(grpc_address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def v2(grpc_address):
    client = triton.InferenceServerClient(grpc_address)
    yield client
    client.close()


def rest_predictions(url: str, rows: np.ndarray, path: str = "/v1/models/digits:predict") -> np.ndarray:
    response = requests.post(f"{url}{path}", json={"instances": rows.tolist()}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    return np.asarray(response.json()["predictions"], dtype=np.float32)


def infer_input(rows: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("pixels", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    return tensor


# -- the stock clients, against the REST answers -------------------------------------------------


def test_tf_serving_predict_equals_rest(stack, tfs, digits_data):
    url, _ = stack
    x, y = digits_data
    rows = x[:64].astype(np.float32)
    response, call = tfs.predict_with_call(predict_request("digits", rows))
    got = only_output(response)
    np.testing.assert_allclose(got, rest_predictions(url, rows), atol=TOLERANCE)
    assert (np.argmax(got, axis=1) == y[:64]).mean() >= 0.9
    assert response.model_spec.name == "digits" and response.model_spec.version.value >= 1
    assert dict(call.initial_metadata()).get("x-request-id")  # the stack's request id comes back


def test_tf_serving_metadata_and_status_equal_rest(stack, tfs):
    url, _ = stack
    metadata = tfs.metadata_of("digits")
    assert metadata.model_spec.name == "digits"
    assert "signature_def" in metadata.metadata
    status = tfs.status_of("digits")
    rest = requests.get(f"{url}/v1/models/digits", timeout=10).json()["model_version_status"]
    assert sorted((s.version, s.state) for s in status.model_version_status) == sorted(
        (int(s["version"]), getattr(type(status.model_version_status[0]), s["state"])) for s in rest
    )


def test_tritonclient_grpc_equals_rest(stack, v2, digits_data):
    url, _ = stack
    assert v2.is_server_live() and v2.is_server_ready() and v2.is_model_ready("digits")
    metadata = v2.get_model_metadata("digits", as_json=True)
    rest = requests.get(f"{url}/v2/models/digits", timeout=10).json()
    assert metadata["name"] == rest["name"] == "digits"
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        (i["name"], i["datatype"]) for i in rest["inputs"]]
    rows = digits_data[0][:16].astype(np.float32)
    result = v2.infer("digits", [infer_input(rows)])
    (output,) = result.get_response().outputs
    np.testing.assert_allclose(result.as_numpy(output.name), rest_predictions(url, rows), atol=TOLERANCE)
    pinned = v2.infer("digits", [infer_input(rows[:2])], model_version="1")
    assert pinned.get_response().model_version == "1"
    np.testing.assert_allclose(pinned.as_numpy(output.name),
                               rest_predictions(url, rows[:2], "/v1/models/digits/versions/1:predict"), atol=TOLERANCE)


# -- bad calls: the right code, and the stack serves on ------------------------------------------


def rpc_error(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return status_of(caught.value)


def test_bad_calls_get_their_codes_and_the_stack_serves_on(tfs, v2, digits_data):
    rows = digits_data[0][:2].astype(np.float32)
    code, message, _ = rpc_error(lambda: tfs.predict(predict_request("unknown", rows)))
    assert code == grpc.StatusCode.NOT_FOUND and "unknown" in message
    code, _, _ = rpc_error(lambda: tfs.predict(predict_request("digits", rows, version=99)))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _, _ = rpc_error(lambda: tfs.predict(predict_request("digits", rows.reshape(2, 64))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    huge = np.zeros((9 * 1024 * 1024 // 4 // 64 + 1, 8, 8, 1), dtype=np.float32)  # over the 8 MiB limit
    code, _, _ = rpc_error(lambda: tfs.predict(predict_request("digits", huge)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(InferenceServerException) as caught:
        v2.infer("nope", [infer_input(rows)])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as caught:
        v2.infer("digits", [infer_input(rows.reshape(2, 4, 16, 1))])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    # Every piece still serves, over both protocols.
    assert only_output(tfs.predict(predict_request("digits", rows))).shape == (2, 10)
    assert v2.is_server_ready()


# -- keys and the rate limit, on a stack of their own --------------------------------------------


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory, digits_version):
    if os.environ.get("E2E_BASE_URL"):
        pytest.skip("starts a local stack of its own")
    _, local = start_stack(tmp_path_factory.mktemp("grpc-keys"), digits_version, "--replicas", "1",
                           env={"GATEWAY_API_KEYS": KEY, "GATEWAY_RATE_LIMIT": "5", "GATEWAY_RATE_BURST": "5"})
    yield local
    assert local.stop() == 0


def test_keys_come_from_metadata_and_a_key_over_its_rate_is_exhausted(keyed_stack, digits_data):
    rows = digits_data[0][:1].astype(np.float32)
    anonymous = TFServing(keyed_stack.grpc)
    code, message, _ = rpc_error(lambda: anonymous.predict(predict_request("digits", rows)))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "API key" in message
    wrong = TFServing(keyed_stack.grpc, metadata=[("x-api-key", "not-the-key")])
    assert rpc_error(lambda: wrong.predict(predict_request("digits", rows)))[0] == grpc.StatusCode.UNAUTHENTICATED
    time.sleep(1.2)  # a full bucket of 5
    for metadata in ([("authorization", f"Bearer {KEY}")], [("x-api-key", KEY)]):
        assert only_output(TFServing(keyed_stack.grpc, metadata=metadata).predict(
            predict_request("digits", rows))).shape == (1, 10)
    keyed = TFServing(keyed_stack.grpc, metadata=[("x-api-key", KEY)])
    codes = []
    for _ in range(12):  # faster than 5/s: the bucket runs dry
        try:
            keyed.predict(predict_request("digits", rows))
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            code, message, trailing = status_of(error)
            codes.append(code)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in message
            assert int(trailing["retry-after"]) >= 1
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    time.sleep(1.2)
    assert only_output(keyed.predict(predict_request("digits", rows))).shape == (1, 10)  # serves on
    # Probes need no key: gRPC health and V2's liveness.
    assert triton.InferenceServerClient(keyed_stack.grpc).is_server_live()


# -- faults and upgrades under gRPC load ---------------------------------------------------------


def predict_load(address: str, rows: np.ndarray, concurrency: int = 8, seconds: float = 90) -> Load:
    client = TFServing(address)
    request = predict_request("digits", rows)
    return Load(load_send(lambda: str(client.predict(request).model_spec.version.value)),
                concurrency=concurrency, max_seconds=seconds, classify=label_of)


def test_sigkill_of_an_inference_worker_under_grpc_load(local_stack, digits_data):
    _, local = local_stack
    master = local.state["inference-2_pid"]
    workers = procs.children(master)
    assert workers
    with predict_load(local.grpc, digits_data[0][:1]) as load:
        load.wait_for(150)
        os.kill(workers[0], signal.SIGKILL)
        load.wait_for(load.result.total + 400, timeout=75)
    result = load.result
    assert result.total >= 550, (result.statuses, result.errors)
    assert result.failures == 0, result.statuses
    wait_ready(local.state["inference"][1], timeout=90)


def test_sigkill_of_a_whole_inference_replica_under_grpc_load(local_stack, digits_data):
    _, local = local_stack
    with predict_load(local.grpc, digits_data[0][:1]) as load:
        load.wait_for(150)
        for pid in procs.tree(local.state["inference-1_pid"]):
            os.kill(pid, signal.SIGKILL)
        load.wait_for(load.result.total + 400, timeout=75)
    result = load.result
    assert result.total >= 550 and result.failures == 0, result.statuses
    wait_ready(local.state["inference"][0], timeout=120)


def test_model_upgrade_under_grpc_load(local_stack, digits_version, digits_data):
    _, local = local_stack
    new = str(models.newest_version(local.model_root, "digits") + 1)
    with predict_load(local.grpc, digits_data[0][:1]) as load:
        load.wait_for(100)
        models.copy_version(digits_version, local.model_root, "digits", int(new))
        switched_after = load.wait_until_only(new, timeout=20)
    result = load.result
    assert result.failures == 0, result.statuses
    assert switched_after < 10, f"version {new} served everywhere only after {switched_after:.1f}s"
    assert result.seen[new] > 0 and len(result.seen) >= 2


def test_the_client_example_make_run_prints_works(grpc_address):
    """`make run` prints `.venv/bin/python examples/grpc_client.py <address>`: both clients read a 0."""
    result = subprocess.run([sys.executable, str(REPO / "examples/grpc_client.py"), grpc_address],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TF Serving Predict: 0 " in result.stdout and "V2 ModelInfer: 0 " in result.stdout, result.stdout
