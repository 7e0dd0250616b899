"""The stock gRPC clients, as the tests drive them: TF Serving's stubs and Triton's client.

Nothing here knows how the server is built: requests are made the way a user of
``tensorflow-serving-api`` or ``tritonclient.grpc`` makes them. ``load_send`` adapts a call to
``stack.load.Load`` (which counts ``status_code``s): 200 for an answer, the gRPC code's
name (and message) for an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

DT_FLOAT = 1  # tensorflow.DataType
Metadata = Sequence[tuple[str, str]]


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1),
                                                   ("grpc.max_receive_message_length", -1)])


def predict_request(model: str, pixels: np.ndarray, *, version: int | None = None,
                    label: str | None = None, input_name: str = "pixels") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    tensor = request.inputs[input_name]
    tensor.dtype = DT_FLOAT
    for size in pixels.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(np.asarray(pixels, dtype=np.float32).ravel().tolist())
    return request


def output_array(tensor) -> np.ndarray:
    """A TensorProto of floats as an array (from float_val or tensor_content)."""
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(shape)
    return np.asarray(tensor.float_val, dtype=np.float32).reshape(shape)


@dataclass
class TFServing:
    """TF Serving's PredictionService and ModelService stubs on one channel."""

    address: str
    metadata: Metadata = ()

    def __post_init__(self) -> None:
        self.channel = channel(self.address)
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def predict(self, request: predict_pb2.PredictRequest, timeout: float = 30) -> predict_pb2.PredictResponse:
        return self.prediction.Predict(request, timeout=timeout, metadata=self.metadata)

    def predict_with_call(self, request: predict_pb2.PredictRequest, timeout: float = 30):
        return self.prediction.Predict.with_call(request, timeout=timeout, metadata=self.metadata)

    def metadata_of(self, model: str, timeout: float = 30) -> get_model_metadata_pb2.GetModelMetadataResponse:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        return self.prediction.GetModelMetadata(request, timeout=timeout, metadata=self.metadata)

    def status_of(self, model: str, timeout: float = 30) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        return self.models.GetModelStatus(request, timeout=timeout, metadata=self.metadata)

    def close(self) -> None:
        self.channel.close()


def only_output(response: predict_pb2.PredictResponse) -> np.ndarray:
    (tensor,) = response.outputs.values()
    return output_array(tensor)


@dataclass
class Outcome:
    """What ``Load`` counts: ``status_code`` 200 for an answer, else the gRPC code's name and message."""

    status_code: int | str
    label: object = None


def load_send(call: Callable[[], object]) -> Callable[[object], Outcome]:
    """``call`` made once per turn of a ``Load`` thread; what it returns is the answer's label."""

    def send(_session: object) -> Outcome:
        try:
            return Outcome(200, call())
        except grpc.RpcError as error:  # the message too: a failure should say where it came from
            return Outcome(f"{error.code().name}: {(error.details() or '')[:120]}")

    return send


def label_of(outcome: Outcome) -> object:
    return outcome.label


def status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(code, message, trailing metadata) of a failed call."""
    trailing = {k: v for k, v in (error.trailing_metadata() or ()) if isinstance(v, str)}
    return error.code(), error.details() or "", trailing
