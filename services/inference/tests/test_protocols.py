"""Both wire formats against a real loaded model, without a server."""

import numpy as np
import pytest

from services.common import jsoncodec
from services.common.errors import ClientError
from services.inference import protocol_tfs, protocol_v2
from services.inference.model_store import VersionStatus
from services.inference.servable import Servable


@pytest.fixture(scope="module")
def digits(digits_version):
    return Servable.load("digits", 1, digits_version)


@pytest.fixture(scope="module")
def multi(multi_version):
    return Servable.load("multi", 1, multi_version)


def image(value=0.5, rows=1):
    return np.full((rows, 8, 8, 1), value, np.float32)


def test_tfs_row_and_columnar_formats(digits):
    rows = protocol_tfs.parse_predict({"instances": image(rows=2).tolist()}, digits, allow_nonfinite=False)
    assert rows.row_format and rows.arrays[0].shape == (2, 8, 8, 1)
    assert rows.signature is digits.default
    columns = protocol_tfs.parse_predict({"inputs": {"pixels": image().tolist()}}, digits, allow_nonfinite=False)
    assert not columns.row_format and columns.arrays[0].shape == (1, 8, 8, 1)
    named = protocol_tfs.parse_predict({"instances": [{"pixels": image()[0].tolist()}]}, digits, allow_nonfinite=False)
    assert named.arrays[0].shape == (1, 8, 8, 1)
    result = digits.predict(columns.arrays)
    assert set(protocol_tfs.predict_response(result, digits.default, True)) == {"predictions"}
    assert set(protocol_tfs.predict_response(result, digits.default, False)) == {"outputs"}


@pytest.mark.parametrize(
    "payload, match",
    [
        ([1, 2], "JSON object"),
        ({"instances": [], "inputs": []}, "exactly one of"),
        ({}, "exactly one of"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [[1]], "signature_name": "other"}, "signature name 'other' not found"),
        ({"inputs": {"pixel": [[1]]}}, "missing"),
        ({"instances": [{"pixels": 1}, 3]}, r"instances\[1\]"),
    ],
)
def test_tfs_request_errors(digits, payload, match):
    with pytest.raises(ClientError, match=match):
        protocol_tfs.parse_predict(payload, digits, allow_nonfinite=False)


def test_tfs_multi_output_rows_are_objects_keyed_by_output(multi):
    instance = {"ids": [1, 2, 3], "flags": [True, False], "scale": [0.5, 1.5]}
    request = protocol_tfs.parse_predict({"instances": [instance, instance]}, multi, allow_nonfinite=False)
    response = protocol_tfs.predict_response(multi.predict(request.arrays), request.signature, request.row_format)
    body = jsoncodec.loads(jsoncodec.dumps(response))
    assert len(body["predictions"]) == 2
    assert set(body["predictions"][0]) == {"emb", "score"}
    assert len(body["predictions"][0]["emb"]) == 6


def test_tfs_status_and_metadata_shapes(digits):
    status = protocol_tfs.status_response([VersionStatus(2, "END", "broken"), VersionStatus(1, "AVAILABLE")])
    assert status["model_version_status"][0] == {
        "version": "2", "state": "END", "status": {"error_code": "UNKNOWN", "error_message": "broken"}
    }
    meta = protocol_tfs.metadata_response("digits", 1, digits)
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert meta["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    assert signature["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["pixels"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert signature["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"] == "10"


def v2_request(digits, payload, binary=None):
    return protocol_v2.parse_infer(payload, binary, digits, allow_nonfinite=False)


def test_v2_json_request_and_response(digits):
    payload = {"id": "7", "inputs": [{"name": "pixels", "shape": [2, 8, 8, 1], "datatype": "FP32",
                                      "data": image(rows=2).ravel().tolist()}]}
    request = v2_request(digits, payload)
    results = digits.predict(request.arrays)
    body, header_length = protocol_v2.infer_response("digits", 1, request, results)
    assert header_length is None
    decoded = jsoncodec.loads(body)
    assert decoded["id"] == "7" and decoded["model_name"] == "digits" and decoded["model_version"] == "1"
    (output,) = decoded["outputs"]
    assert output["name"] == "probabilities" and output["datatype"] == "FP32" and output["shape"] == [2, 10]
    np.testing.assert_allclose(np.array(output["data"]).reshape(2, 10), results[0], rtol=1e-6)


def test_v2_binary_request_and_binary_output(digits):
    tensor = image(0.25, rows=3)
    header = jsoncodec.dumps({
        "inputs": [{"name": "pixels", "shape": [3, 8, 8, 1], "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    })
    json_part, binary = protocol_v2.split_binary(header + tensor.tobytes(), str(len(header)))
    request = v2_request(digits, jsoncodec.loads(json_part), binary)
    np.testing.assert_array_equal(request.arrays[0], tensor)
    results = digits.predict(request.arrays)
    body, header_length = protocol_v2.infer_response("digits", 1, request, results)
    meta = jsoncodec.loads(body[:header_length])
    size = meta["outputs"][0]["parameters"]["binary_data_size"]
    raw = np.frombuffer(body[header_length:header_length + size], "<f4").reshape(3, 10)
    np.testing.assert_array_equal(raw, results[0])


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, "unknown input 'x'"),
        ({"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32"}]}, "neither 'data'"),
        ({"id": 5, "inputs": [{}]}, "'id' must be a string"),
        ({"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64}],
          "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
        ({"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32",
                      "parameters": {"binary_data_size": 256}}]}, "no binary part"),
    ],
)
def test_v2_request_errors(digits, payload, match):
    with pytest.raises(ClientError, match=match):
        v2_request(digits, payload)


def test_v2_binary_framing_errors(digits):
    with pytest.raises(ClientError, match="Inference-Header-Content-Length"):
        protocol_v2.split_binary(b"{}", "99")
    header = jsoncodec.dumps({"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                          "parameters": {"binary_data_size": 256}}]})
    json_part, binary = protocol_v2.split_binary(header + bytes(260), str(len(header)))
    with pytest.raises(ClientError, match="4 bytes no input claims"):
        v2_request(digits, jsoncodec.loads(json_part), binary)


def test_v2_metadata_lists_typed_tensors(multi):
    meta = protocol_v2.model_metadata("multi", [1], multi)
    assert meta["versions"] == ["1"] and meta["platform"] == "tensorflow_keras"
    assert {(t["name"], t["datatype"]) for t in meta["inputs"]} == {
        ("ids", "INT64"), ("flags", "BOOL"), ("scale", "FP64")
    }
    assert {(t["name"], t["datatype"]) for t in meta["outputs"]} == {("emb", "FP32"), ("score", "FP64")}


def test_model_errors_on_valid_shapes_are_client_errors(multi):
    # Index 30 is past the 10-row embedding table: the model itself refuses it.
    arrays = [np.array([[True, False]]), np.array([[1, 2, 30]], np.int64), np.array([[1.0, 2.0]])]
    with pytest.raises(ClientError, match="model rejected the input"):
        multi.predict(arrays)
