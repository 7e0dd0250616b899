"""The gateway's protobuf wire reader and writer against the real generated messages.

The gateway reads routing fields by number (it has no TensorFlow, so no TF Serving modules);
these tests take the numbers, the message types and the method names from the descriptors of
tensorflow-serving-api, tritonclient.grpc and grpcio-health-checking, so a number written
wrong, or a method that does not exist, fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
)
from tritonclient.grpc import service_pb2

from services.gateway import grpc_calls
from services.gateway import grpc_wire as wire
from services.gateway.grpc_calls import FORWARDED, Asked
from services.gateway.grpc_wire import WireError

SERVICES = {
    grpc_calls.PREDICTION: prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
    grpc_calls.MODEL_SERVICE: model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
    grpc_calls.V2: service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    grpc_calls.HEALTH: health_pb2.DESCRIPTOR.services_by_name["Health"],
}
REQUESTS = {
    "/tensorflow.serving.PredictionService/Predict": predict_pb2.PredictRequest,
    "/tensorflow.serving.PredictionService/GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
    "/tensorflow.serving.ModelService/GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
    "/inference.GRPCInferenceService/ModelInfer": service_pb2.ModelInferRequest,
    "/inference.GRPCInferenceService/ModelMetadata": service_pb2.ModelMetadataRequest,
    "/inference.GRPCInferenceService/ModelReady": service_pb2.ModelReadyRequest,
}


def method_descriptor(path: str):
    service, name = path.strip("/").split("/")
    return SERVICES[service].methods_by_name[name]


def test_every_method_the_gateway_serves_exists_with_the_request_type_tested_here():
    assert set(FORWARDED) == set(REQUESTS)
    for path, request in REQUESTS.items():
        assert method_descriptor(path).input_type.full_name == request.DESCRIPTOR.full_name
    for path in grpc_calls.ANSWERED:
        method_descriptor(path)  # KeyError if the gateway answers a method that does not exist


def test_the_field_numbers_are_the_generated_ones():
    for path, request in REQUESTS.items():
        fields = request.DESCRIPTOR.fields_by_name
        if FORWARDED[path].tfs:
            assert fields["model_spec"].number == grpc_calls._SPEC
            assert fields["model_spec"].message_type.full_name == "tensorflow.serving.ModelSpec"
        else:
            names = ("model_name", "model_version") if "model_name" in fields else ("name", "version")
            assert [fields[n].number for n in names] == [grpc_calls._V2_NAME, grpc_calls._V2_VERSION]
            assert all(fields[n].type == fields[n].TYPE_STRING for n in names)
    spec = model_pb2.ModelSpec.DESCRIPTOR.fields_by_name
    assert (spec["name"].number, spec["version"].number, spec["version_label"].number) == (
        grpc_calls._NAME, grpc_calls._VERSION, grpc_calls._LABEL)
    assert spec["version"].message_type.full_name == "google.protobuf.Int64Value"
    assert spec["version"].message_type.fields_by_name["value"].number == grpc_calls._INT64_VALUE


def predict(**spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].dtype = 1
    request.inputs["x"].tensor_shape.dim.add().size = 2
    request.inputs["x"].float_val.extend([0.5, -1.25])
    return request


def infer(**fields) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(id="r-1", **fields)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    request.raw_input_contents.append(np.arange(4, dtype="<f4").tobytes())
    return request


@pytest.mark.parametrize(("request_message", "asked"), [
    (predict(name="digits"), Asked("digits", None, None)),
    (predict(name="digits", version=7), Asked("digits", "7", None)),
    (predict(name="digits", version=0), Asked("digits", "0", None)),  # set, if to 0: not the default
    (predict(name="digits", version=-3), Asked("digits", "-3", None)),  # a ten-byte varint
    (predict(name="digits", version_label="canary"), Asked("digits", None, "canary")),
    (predict(), Asked("", None, None)),
])
def test_reads_what_a_tf_serving_request_asks_for(request_message, asked):
    assert FORWARDED["/tensorflow.serving.PredictionService/Predict"].asked(
        request_message.SerializeToString()) == asked


def test_reads_the_model_spec_of_metadata_and_status_requests():
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "m.1"
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "m.1"
    status.model_spec.version_label = "stable"
    assert FORWARDED["/tensorflow.serving.PredictionService/GetModelMetadata"].asked(
        metadata.SerializeToString()) == Asked("m.1", None, None)
    assert FORWARDED["/tensorflow.serving.ModelService/GetModelStatus"].asked(
        status.SerializeToString()) == Asked("m.1", None, "stable")


def test_reads_what_a_v2_request_asks_for():
    v2 = FORWARDED["/inference.GRPCInferenceService/ModelInfer"]
    assert v2.asked(infer(model_name="digits").SerializeToString()) == Asked("digits", None, None)
    assert v2.asked(infer(model_name="digits", model_version="2").SerializeToString()) == Asked("digits", "2", None)
    ready = service_pb2.ModelReadyRequest(name="digits", version="1").SerializeToString()
    assert FORWARDED["/inference.GRPCInferenceService/ModelReady"].asked(ready) == Asked("digits", "1", None)


def test_a_spec_sent_twice_is_merged_as_protobuf_merges_it():
    """Two ModelSpec fields: the parser merges them (name from one, version from the other)."""
    first = model_pb2.ModelSpec(name="digits").SerializeToString()
    second = model_pb2.ModelSpec()
    second.version.value = 2
    body = wire.encode_len(1, first) + wire.encode_len(1, second.SerializeToString())
    parsed = predict_pb2.PredictRequest.FromString(body)
    asked = FORWARDED["/tensorflow.serving.PredictionService/Predict"].asked(body)
    assert asked == Asked(parsed.model_spec.name, str(parsed.model_spec.version.value), None)
    assert asked == Asked("digits", "2", None)


@pytest.mark.parametrize(("version", "label"), [("2", None), (None, "canary")])
def test_the_canary_rewrites_only_the_version_of_a_tf_serving_request(version, label):
    original = predict(name="digits")
    method = FORWARDED["/tensorflow.serving.PredictionService/Predict"]
    rewritten = predict_pb2.PredictRequest.FromString(method.choose(original.SerializeToString(), version, label))
    if version:
        assert rewritten.model_spec.version.value == int(version)
        assert rewritten.model_spec.WhichOneof("version_choice") == "version"
    else:
        assert rewritten.model_spec.version_label == label
    rewritten.model_spec.ClearField("version_choice")
    assert rewritten == original  # every other field, inputs included, as it was


def test_the_canary_rewrites_only_the_version_of_a_v2_request():
    original = infer(model_name="digits")
    method = FORWARDED["/inference.GRPCInferenceService/ModelInfer"]
    rewritten = service_pb2.ModelInferRequest.FromString(method.choose(original.SerializeToString(), "2", None))
    assert rewritten.model_version == "2"
    rewritten.model_version = ""
    assert rewritten == original
    assert method.choose(original.SerializeToString(), None, "canary") == original.SerializeToString()  # no labels


def test_answers_the_gateway_writes_parse_as_the_generated_messages():
    assert service_pb2.ServerLiveResponse.FromString(grpc_calls.bool_response(True)).live is True
    assert service_pb2.ServerReadyResponse.FromString(grpc_calls.bool_response(False)).ready is False
    serving = health_pb2.HealthCheckResponse.FromString(grpc_calls.health_response(True))
    assert serving.status == health_pb2.HealthCheckResponse.SERVING
    down = health_pb2.HealthCheckResponse.FromString(grpc_calls.health_response(False))
    assert down.status == health_pb2.HealthCheckResponse.NOT_SERVING
    meta = service_pb2.ServerMetadataResponse.FromString(
        grpc_calls.server_metadata_response("modelserver", "1.2", ["a", "b"]))
    assert (meta.name, meta.version, list(meta.extensions)) == ("modelserver", "1.2", ["a", "b"])
    assert grpc_calls.health_service(health_pb2.HealthCheckRequest(service="x.Y").SerializeToString()) == "x.Y"


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, -1, -(2**63)])
def test_varints_round_trip_as_int64(value):
    encoded = wire.varint(value)
    assert len(encoded) <= 10
    decoded, end = wire.read_varint(encoded, 0)
    assert end == len(encoded) and wire.int64(decoded) == value


@pytest.mark.parametrize(("body", "why"), [
    (b"\x0a\x05ab", "runs past the end"),  # a length longer than what follows
    (b"\x0a", "truncated varint"),
    (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than 10 bytes"),
    (b"\x0b", "wire type 3"),  # a group
    (b"\x00\x01", "field number 0"),
    (b"\x08\x01", "wire type 0, expected 2"),  # model_spec as a number
    (wire.encode_len(1, wire.encode_len(1, b"\xff\xfe")), "not UTF-8"),
])
def test_malformed_messages_raise_wire_errors(body, why):
    with pytest.raises(WireError, match=why):
        FORWARDED["/tensorflow.serving.PredictionService/Predict"].asked(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_an_answer_or_a_wire_error(body):
    for method in FORWARDED.values():
        try:
            method.asked(body)
        except WireError:
            pass


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40), st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), st.text(max_size=20),
       st.lists(st.floats(width=32, allow_nan=False), max_size=5))
def test_reads_and_rewrites_any_generated_predict_request(name, version, signature, values):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].float_val.extend(values)
    method = FORWARDED["/tensorflow.serving.PredictionService/Predict"]
    body = request.SerializeToString()
    assert method.asked(body) == Asked(name, None if version is None else str(version), None)
    rewritten = predict_pb2.PredictRequest.FromString(method.choose(body, "5", None))
    assert rewritten.model_spec.version.value == 5
    rewritten.model_spec.version.value = version or 0
    if version is None:
        rewritten.model_spec.ClearField("version_choice")
    assert rewritten == request
