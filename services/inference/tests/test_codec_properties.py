"""Property tests of the codecs (hypothesis): any JSON is answered or refused as the client's
fault, never as ours, and tensors survive encoding and decoding unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import jsoncodec, naturals, requestid
from services.common.errors import ClientError
from services.inference import protocol_tfs, protocol_v2
from services.inference.servable import DEFAULT_SIGNATURE, Servable, Signature
from services.inference.tensors import (
    DATATYPES,
    TensorSpec,
    from_bytes,
    from_typed_json,
    strings_to_bytes,
    strings_to_json,
)

PROPERTIES = settings(max_examples=300, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=40,
)
names = st.sampled_from(["pixels", "ids", "flags", "scale", "probabilities", "emb", "score", ""]) | st.text(max_size=6)
shapes = st.lists(st.integers(0, 10) | st.sampled_from([10**9, 2**63, -1]), max_size=5)
tensor = st.fixed_dictionaries(
    {
        "name": names | json_values,
        "shape": shapes | json_values,
        "datatype": st.sampled_from(sorted(DATATYPES)) | json_values,
    },
    optional={
        "data": json_values | st.lists(st.floats(allow_nan=False) | st.integers(-300, 300), max_size=70),
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 300)}) | json_values,
    },
)
v2_payloads = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=4) | json_values},
    optional={
        "id": json_values,
        "outputs": st.lists(st.fixed_dictionaries({"name": names | json_values})) | json_values,
        "parameters": json_values,
    },
)
tfs_payloads = st.dictionaries(
    st.sampled_from(["instances", "inputs", "signature_name"]) | st.text(max_size=6),
    json_values | st.lists(st.lists(st.floats(allow_nan=False), max_size=8), max_size=3), max_size=3,
) | json_values


@pytest.fixture(scope="module")
def servables(digits_version, multi_version):
    return [Servable.load("digits", 1, digits_version), Servable.load("multi", 1, multi_version)]


def refused_as_client_error(call) -> None:
    try:
        call()
    except ClientError as error:
        assert 400 <= error.status < 500 and error.message


@PROPERTIES
@given(payload=v2_payloads, binary=st.none() | st.binary(max_size=300), which=st.integers(0, 1))
def test_any_v2_request_is_parsed_or_refused_as_a_client_error(servables, payload, binary, which):
    refused_as_client_error(lambda: protocol_v2.parse_infer(
        payload, None if binary is None else memoryview(binary), servables[which], allow_nonfinite=False))


@PROPERTIES
@given(payload=tfs_payloads, which=st.integers(0, 1))
def test_any_tfs_request_is_parsed_or_refused_as_a_client_error(servables, payload, which):
    refused_as_client_error(lambda: protocol_tfs.parse_predict(payload, servables[which], allow_nonfinite=False))


@PROPERTIES
@given(body=st.binary(max_size=200), header=st.text(max_size=25))
def test_any_binary_framing_is_split_or_refused_as_a_client_error(body, header):
    refused_as_client_error(lambda: protocol_v2.split_binary(body, header))


@PROPERTIES
@given(data=st.binary(max_size=300))
def test_any_bytes_are_json_or_a_decode_error(data):
    try:
        value = jsoncodec.loads(data)
    except jsoncodec.JSONDecodeError:
        return
    assert jsoncodec.loads(jsoncodec.dumps(value)) == value


@st.composite
def arrays(draw):
    datatype = draw(st.sampled_from(sorted(DATATYPES)))
    dtype = DATATYPES[datatype][0]
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    count = int(np.prod(shape))
    if dtype.kind == "O":  # BYTES: text, so that the JSON form (UTF-8) carries it exactly too
        texts = draw(st.lists(st.text(max_size=6), min_size=count, max_size=count))
        values = np.empty(count, dtype=object)
        values[:] = [t.encode("utf-8", "surrogatepass") for t in texts]
        return datatype, values.reshape(shape)
    if dtype.kind == "b":
        values = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    elif dtype.kind == "f":
        width = {2: 16, 4: 32, 8: 64}[dtype.itemsize]
        values = draw(st.lists(st.floats(width=width, allow_nan=False, allow_infinity=False),
                               min_size=count, max_size=count))
    else:
        info = np.iinfo(dtype)
        values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=count, max_size=count))
    return datatype, np.array(values, dtype=dtype).reshape(shape)


def spec_for(array: np.ndarray) -> TensorSpec:
    return TensorSpec("x", array.dtype, (None, *array.shape[1:]))


def binary_of(array: np.ndarray) -> bytes:
    """The binary extension's layout, as tritonclient writes it."""
    if array.dtype.kind == "O":
        return strings_to_bytes(array)
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def flat_json(array: np.ndarray) -> list:
    return strings_to_json(array.ravel()) if array.dtype.kind == "O" else array.ravel().tolist()


@PROPERTIES
@given(case=arrays())
def test_binary_and_json_tensors_round_trip_exactly(case):
    datatype, array = case
    spec = spec_for(array)
    decoded = from_bytes(memoryview(binary_of(array)), datatype, list(array.shape), spec, "x", allow_nonfinite=False)
    np.testing.assert_array_equal(decoded, array)
    assert decoded.dtype == array.dtype
    typed = from_typed_json(jsoncodec.loads(jsoncodec.dumps(flat_json(array))), datatype,
                            list(array.shape), spec, "x", allow_nonfinite=False)
    np.testing.assert_array_equal(typed, array)


@PROPERTIES
@given(case=arrays(), as_binary=st.booleans())
def test_a_v2_request_encoded_like_tritonclient_decodes_to_the_same_tensor_and_back(case, as_binary):
    datatype, array = case
    spec = spec_for(array)
    signature = Signature(DEFAULT_SIGNATURE, (spec,), (spec,), call=lambda *arrays: arrays)
    servable = Servable("m", 1, {DEFAULT_SIGNATURE: signature})
    entry = {"name": "x", "shape": list(array.shape), "datatype": datatype}
    if as_binary:
        raw = binary_of(array)
        entry["parameters"] = {"binary_data_size": len(raw)}
        header = jsoncodec.dumps({"inputs": [entry], "parameters": {"binary_data_output": True}})
        json_part, binary = protocol_v2.split_binary(header + raw, str(len(header)))
    else:
        entry["data"] = flat_json(array)
        json_part, binary = protocol_v2.split_binary(jsoncodec.dumps({"inputs": [entry]}), None)
    request = protocol_v2.parse_infer(jsoncodec.loads(json_part), binary, servable, allow_nonfinite=False)
    np.testing.assert_array_equal(request.arrays[0], array)
    body, header_length = protocol_v2.infer_response("m", 1, request, request.arrays)
    meta = jsoncodec.loads(body[:header_length] if header_length else body)["outputs"][0]
    assert meta["shape"] == list(array.shape) and meta["datatype"] == datatype
    if header_length:
        back = from_bytes(body[header_length:], datatype, meta["shape"], spec, "x", allow_nonfinite=False)
    else:
        back = from_typed_json(meta["data"], datatype, meta["shape"], spec, "x", allow_nonfinite=False)
    np.testing.assert_array_equal(back, array)


@PROPERTIES
@given(text=st.text(max_size=30))
def test_natural_numbers_parse_only_from_ascii_digits(text):
    number = naturals.parse(text)
    assert number is None or (str(number) == text.lstrip("0") or (number == 0 and set(text) == {"0"}))


@PROPERTIES
@given(value=st.text(max_size=200))
def test_request_ids_echoed_are_always_safe_to_put_in_a_header(value):
    accepted = requestid.accept_or_generate(value)
    assert accepted == value or value != accepted
    assert accepted.isascii() and "\r" not in accepted and "\n" not in accepted and 0 < len(accepted) <= 128
