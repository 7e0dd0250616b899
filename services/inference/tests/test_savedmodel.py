"""SavedModel versions through a real Gunicorn server, checked against TensorFlow's own answers:
a Keras 3 ``model.export`` of the digits model and a ``tf.saved_model.save`` module with two
signatures, called with TF Serving's documented REST bodies, raw V2 and NVIDIA's tritonclient."""

from __future__ import annotations

import base64
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.support import models
from tests.support.servers import start_inference

pytestmark = pytest.mark.slow

CLASSIFY = "classify_cats_vs_dogs"
# The request bodies of TF Serving's REST API documentation (api_rest, "Request format" and
# "Encoding binary values"), the numeric one without its string "tag" input.
DOC_ROWS = {"instances": [
    {"signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
    {"signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
]}
DOC_COLUMNS = {"inputs": {"signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]], "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}}
DOC_B64 = {"signature_name": CLASSIFY, "instances": [
    {"image": {"b64": "aW1hZ2UgYnl0ZXM="}, "caption": "seaside"},
    {"image": {"b64": "YXdlc29tZSBpbWFnZSBieXRlcw=="}, "caption": "mountains"},
]}


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits_version, digits_savedmodel, two_signatures):
    root = tmp_path_factory.mktemp("savedmodel") / "models"
    models.copy_version(digits_savedmodel, root, "exported", 1)
    # A copy cut short: saved_model.pb truncated to half (a corrupt protocol buffer).
    corrupt = models.copy_version(digits_savedmodel, root, "exported", 2)
    pb = corrupt / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    models.no_default_signature_module(root / "exported" / "3")
    models.copy_version(two_signatures, root, "two", 1)
    both = models.copy_version(two_signatures, root, "two", 2)
    shutil.copy(digits_version / "model.keras", both / "model.keras")
    (root / "two" / "3").mkdir()
    (root / "two" / "3" / "labels.txt").write_text("no model here\n")
    models.copy_version(two_signatures, root, "swap", 1)
    process, url = start_inference(root, root.parent / "server.log", env={"INFERENCE_WORKERS": "1"})
    yield url, root
    assert process.stop() == 0, process.log_tail()


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def reference(digits_savedmodel, two_signatures):
    """TensorFlow's own answers: tf.saved_model.load(...).signatures[...], in this process."""
    import tensorflow as tf

    loaded = {"exported": tf.saved_model.load(str(digits_savedmodel)), "two": tf.saved_model.load(str(two_signatures))}

    def call(model: str, signature: str, **inputs) -> dict[str, np.ndarray]:
        function = loaded[model].signatures[signature]
        return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    call.loaded = loaded
    return call


def doc_numbers(body: dict) -> dict[str, np.ndarray]:
    columns = body["inputs"] if "inputs" in body else {
        name: [row[name] for row in body["instances"]] for name in body["instances"][0]
    }
    return {name: np.array(value, np.float32) for name, value in columns.items()}


def assert_error(response: requests.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message


def test_bad_versions_are_errors_in_the_status_and_the_good_one_serves(server):
    assert requests.get(f"{server}/readyz").status_code == 200
    for model, problems in {
        "exported": {3: "no 'serving_default' signature (it has ['double'])", 2: "saved_model.pb"},
        "two": {3: "holds no model", 2: "holds both model.keras and saved_model.pb"},
    }.items():
        statuses = {
            int(s["version"]): s for s in requests.get(f"{server}/v1/models/{model}").json()["model_version_status"]
        }
        assert statuses[1]["state"] == "AVAILABLE", statuses
        for version, fragment in problems.items():
            assert statuses[version]["state"] == "END"
            assert statuses[version]["status"]["error_code"] == "UNKNOWN"
            assert fragment in statuses[version]["status"]["error_message"], statuses[version]
        assert_error(requests.get(f"{server}/v1/models/{model}/versions/2/metadata"), 404, "version 2 not found")
        assert_error(requests.post(f"{server}/v1/models/{model}/versions/3:predict", json={"instances": [1]}), 404)


def test_keras_export_predicts_as_its_serving_signature(server, digits_data, reference):
    x = digits_data[0][:7]
    (name,) = reference.loaded["exported"].signatures["serving_default"].structured_input_signature[1]
    wanted = reference("exported", "serving_default", **{name: x})["output_0"]
    rows = requests.post(f"{server}/v1/models/exported:predict", json={"instances": x.tolist()})
    np.testing.assert_allclose(np.array(rows.json()["predictions"]), wanted, atol=1e-5)
    columns = requests.post(f"{server}/v1/models/exported/versions/1:predict", json={"inputs": {name: x.tolist()}})
    np.testing.assert_allclose(np.array(columns.json()["outputs"]), wanted, atol=1e-5)
    v2 = requests.post(f"{server}/v2/models/exported/infer", json={"inputs": [
        {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}).json()
    assert v2["outputs"][0]["name"] == "output_0"
    np.testing.assert_allclose(np.array(v2["outputs"][0]["data"]).reshape(wanted.shape), wanted, atol=1e-5)
    meta = requests.get(f"{server}/v2/models/exported").json()
    assert meta["platform"] == "tensorflow_savedmodel"
    assert meta["inputs"] == [{"name": name, "datatype": "FP32", "shape": [-1, 8, 8, 1]}]


def test_tf_serving_documented_bodies_against_two_signatures(server, reference):
    numbers = reference("two", "serving_default", **doc_numbers(DOC_ROWS))
    rows = requests.post(f"{server}/v1/models/two:predict", json=DOC_ROWS)
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert [set(p) for p in predictions] == [{"scaled", "total"}] * 2  # one object per row
    np.testing.assert_allclose([p["total"] for p in predictions], numbers["total"], atol=1e-5)
    np.testing.assert_allclose([p["scaled"] for p in predictions], numbers["scaled"], atol=1e-5)
    columns = requests.post(
        f"{server}/v1/models/two:predict", json={"signature_name": "serving_default", **DOC_COLUMNS}
    )
    outputs = columns.json()["outputs"]
    np.testing.assert_allclose(outputs["total"], numbers["total"], atol=1e-5)
    np.testing.assert_allclose(outputs["scaled"], numbers["scaled"], atol=1e-5)

    images = [base64.b64decode(r["image"]["b64"]) for r in DOC_B64["instances"]]
    captions = [r["caption"] for r in DOC_B64["instances"]]
    strings = reference("two", CLASSIFY, image=images, caption=captions)
    b64_rows = requests.post(f"{server}/v1/models/two:predict", json=DOC_B64)
    assert b64_rows.status_code == 200, b64_rows.text
    for got, length, upper, image in zip(b64_rows.json()["predictions"], strings["length"],
                                         strings["caption_upper"], strings["image_bytes"], strict=True):
        # "_bytes" output: base64; the other string output: text.
        assert got == {"length": int(length), "caption_upper": upper.decode(),
                       "image_bytes": {"b64": base64.b64encode(image).decode()}}
    binary = bytes(range(256))  # not UTF-8: only b64 carries it
    b64_columns = requests.post(
        f"{server}/v1/models/two:predict",
        json={
            "signature_name": CLASSIFY,
            "inputs": {"image": [{"b64": base64.b64encode(binary).decode()}], "caption": ["é"]},
        },
    )
    out = b64_columns.json()["outputs"]
    expected = reference("two", CLASSIFY, image=[binary], caption=["é"])
    assert base64.b64decode(out["image_bytes"][0]["b64"]) == expected["image_bytes"][0] == binary[::-1]
    assert out["caption_upper"] == [expected["caption_upper"][0].decode()] and out["length"] == [256 + 2]


def test_metadata_shows_every_signature_as_tf_serving_does(server, reference):
    from tensorflow.core.framework import types_pb2

    meta = requests.get(f"{server}/v1/models/two/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "two", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    loaded = reference.loaded["two"]
    assert set(defs) == {*loaded.signatures, "__saved_model_init_op"}
    for name, function in loaded.signatures.items():
        sig = defs[name]
        assert list(sig) == ["inputs", "outputs", "method_name"]
        assert sig["method_name"] == "tensorflow/serving/predict"
        for group, specs in (
            ("inputs", function.structured_input_signature[1]),
            ("outputs", function.structured_outputs),
        ):
            assert list(sig[group]) == sorted(specs)
            for key, spec in specs.items():
                tensor = sig[group][key]
                assert tensor["dtype"] == types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
                assert tensor["tensor_shape"] == {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                                          for d in spec.shape], "unknown_rank": False}
                assert ":" in tensor["name"]  # a graph tensor, "op:index"
    assert defs["serving_default"]["inputs"]["signal"]["name"] == "serving_default_signal:0"
    v2 = requests.get(f"{server}/v2/models/two").json()
    assert v2["platform"] == "tensorflow_savedmodel"
    assert [(t["name"], t["datatype"], t["shape"]) for t in v2["inputs"]] == [
        ("sensor", "FP32", [-1, 2, 2]), ("signal", "FP32", [-1, 5])]
    assert [t["name"] for t in v2["outputs"]] == ["scaled", "total"]
    config = requests.get(f"{server}/v2/models/two/config").json()
    assert config["platform"] == "tensorflow_savedmodel" and config["default_model_filename"] == "saved_model.pb"


def test_tritonclient_infers_against_a_savedmodel(server, reference):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.removeprefix("http://"))
    inputs = doc_numbers(DOC_COLUMNS)
    wanted = reference("two", "serving_default", **inputs)
    assert client.get_model_metadata("two")["platform"] == "tensorflow_savedmodel"
    for binary in (True, False):
        tensors = []
        for name, array in inputs.items():
            tensor = triton.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array, binary_data=binary)
            tensors.append(tensor)
        result = client.infer("two", tensors, outputs=[
            triton.InferRequestedOutput(n, binary_data=binary) for n in ("total", "scaled")])
        for name in ("total", "scaled"):
            np.testing.assert_allclose(result.as_numpy(name), wanted[name], atol=1e-5)
        # The string signature, named by the request's signature_name parameter.
        # Bytes that are not UTF-8 go as binary data only (tritonclient refuses them in JSON).
        image = np.array([b"\x00\xffraw" if binary else b"raw", b"png"], dtype=object)
        caption = np.array([b"sea", b"hill"], dtype=object)
        strings = []
        for name, array in (("image", image), ("caption", caption)):
            tensor = triton.InferInput(name, [2], "BYTES")
            tensor.set_data_from_numpy(array, binary_data=binary)
            strings.append(tensor)
        result = client.infer("two", strings, parameters={"signature_name": CLASSIFY}, outputs=[
            triton.InferRequestedOutput("image_bytes", binary_data=True),
            triton.InferRequestedOutput("caption_upper", binary_data=binary),
            triton.InferRequestedOutput("length", binary_data=binary)])
        expected = reference("two", CLASSIFY, image=list(image), caption=list(caption))
        assert list(result.as_numpy("image_bytes")) == list(expected["image_bytes"])
        assert [bytes(v) if isinstance(v, bytes) else v.encode() for v in result.as_numpy("caption_upper")] == [
            b"SEA", b"HILL"] == list(expected["caption_upper"])
        np.testing.assert_array_equal(result.as_numpy("length"), expected["length"])
    client.close()


@pytest.mark.parametrize(
    "path, body, status, fragments",
    [
        (
            "/v1/models/two:predict",
            {"signature_name": "nope", **DOC_ROWS},
            400,
            ("'nope' not found", "['classify_cats_vs_dogs', 'serving_default']"),
        ),
        ("/v1/models/two:predict", {"signature_name": 7, **DOC_ROWS}, 400, ("signature_name",)),
        (
            "/v1/models/two:predict",
            {"signature_name": CLASSIFY, "inputs": {"image": [{"b64": "%%%"}], "caption": ["x"]}},
            400,
            ("not valid base64",),
        ),
        (
            "/v1/models/two:predict",
            {"signature_name": CLASSIFY, "inputs": {"image": [1], "caption": ["x"]}},
            400,
            ("expected strings",),
        ),
        (
            "/v1/models/two:predict",
            {"signature_name": CLASSIFY, "inputs": {"image": ["a", "b"], "caption": ["x"]}},
            400,
            ("disagree on the batch size",),
        ),
        (
            "/v1/models/two:predict",
            {"inputs": {"signal": [["a"] * 5], "sensor": [[[1, 2], [3, 4]]]}},
            400,
            ("strings",),
        ),
        (
            "/v2/models/two/infer",
            {
                "parameters": {"signature_name": "nope"},
                "inputs": [{"name": "signal", "shape": [1, 5], "datatype": "FP32", "data": [1] * 5}],
            },
            400,
            ("'nope' not found",),
        ),
        (
            "/v2/models/two/infer",
            {
                "parameters": {"signature_name": CLASSIFY},
                "inputs": [
                    {"name": "image", "shape": [1], "datatype": "FP32", "data": [1]},
                    {"name": "caption", "shape": [1], "datatype": "BYTES", "data": ["x"]},
                ],
            },
            400,
            ("takes strings (BYTES), got FP32",),
        ),
        (
            "/v2/models/two/infer",
            {
                "inputs": [
                    {"name": "signal", "shape": [1, 5], "datatype": "BYTES", "data": ["a"] * 5},
                    {"name": "sensor", "shape": [1, 2, 2], "datatype": "FP32", "data": [1] * 4},
                ]
            },
            400,
            ("got BYTES",),
        ),
    ],
)
def test_bad_requests_are_clear_4xx(server, path, body, status, fragments):
    assert_error(requests.post(f"{server}{path}", json=body), status, *fragments)


def test_batches_never_mix_signatures(server, reference):
    numbers = reference("two", "serving_default", **doc_numbers(DOC_COLUMNS))

    def call(index: int) -> None:
        if index % 2:
            response = requests.post(f"{server}/v1/models/two:predict", json=DOC_COLUMNS)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["outputs"]["total"], numbers["total"], atol=1e-5)
        else:
            caption = f"c{index}"
            response = requests.post(f"{server}/v1/models/two:predict", json={
                "signature_name": CLASSIFY, "instances": [{"image": "ab", "caption": caption}]})
            assert response.status_code == 200, response.text
            assert response.json()["predictions"] == [
                {"length": 2 + len(caption), "caption_upper": caption.upper(), "image_bytes": {"b64": "YmE="}}]

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(call, range(96)))


def test_hot_swap_under_load_and_a_signature_change_is_refused(served, tmp_path, digits_savedmodel):
    url, root = served
    body = {"instances": [{"signal": [1, 1, 1, 1, 1], "sensor": [[0, 0], [0, 0]]}]}
    before = requests.post(f"{url}/v1/models/swap:predict", json=body).json()["predictions"][0]["total"]
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = requests.post(f"{url}/v1/models/swap:predict", json=body)
            if response.status_code != 200:
                failures.append(response.text)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        models.copy_version(models.two_signature_module(tmp_path / "doubled", scale=2.0), root, "swap", 2)
        wait_for(url, "swap", 2, "AVAILABLE")
        models.copy_version(digits_savedmodel, root, "swap", 3)
        status = wait_for(url, "swap", 3, "END")
    finally:
        stop.set()
        worker.join()
    assert not failures, failures[:3]
    assert "signature differs from version 2" in status["status"]["error_message"]
    after = requests.post(f"{url}/v1/models/swap:predict", json=body).json()["predictions"][0]["total"]
    assert after == pytest.approx(2 * before, abs=1e-5)  # version 2 (weights doubled) serves


def wait_for(url: str, model: str, version: int, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in requests.get(f"{url}/v1/models/{model}").json()["model_version_status"]:
            if status["version"] == str(version) and status["state"] == state:
                return status
        time.sleep(0.2)
    raise TimeoutError(f"{model} version {version} never reached {state}")
