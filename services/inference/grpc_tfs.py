"""TensorFlow Serving's gRPC API: ``PredictionService`` (Predict, GetModelMetadata) and
``ModelService`` (GetModelStatus), on the messages of ``tensorflow-serving-api``.

A ``TensorProto`` becomes the same checked array a REST body's JSON does (``tensors.convert``),
and a Predict the same ``protocol_tfs.Predict``, submitted to the same batcher.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from services.common.errors import ClientError, NotFound
from services.inference import calls, protocol_tfs, tensors
from services.inference.batching import Timing
from services.inference.calls import Call
from services.inference.config import InferenceSettings
from services.inference.grpc_server import ModelCalls, Rpc, handler
from services.inference.model_store import ModelStore
from services.inference.serving import ServedVersion
from services.inference.tensors import DATATYPES, TensorInfo, TensorSpec
from services.protocol import facts

PREDICT = "/tensorflow.serving.PredictionService/Predict"
SERVICES = frozenset({"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"})

_DATATYPE_OF_TF = {tf_name: datatype for datatype, (_, tf_name) in facts.DATATYPES.items()}
# The TensorProto field that holds a DataType's values when ``tensor_content`` is empty.
_VALUES = {
    "DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_HALF": "half_val",
    "DT_INT8": "int_val", "DT_INT16": "int_val", "DT_INT32": "int_val", "DT_UINT8": "int_val",
    "DT_UINT16": "int_val", "DT_INT64": "int64_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val",
    "DT_BOOL": "bool_val", "DT_STRING": "string_val",
}
_TF_NAMES = {number: name for name, number in types_pb2.DataType.items()}
_STATE = get_model_status_pb2.ModelVersionStatus.State
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_name


def to_array(proto: tensor_pb2.TensorProto, spec: TensorSpec, where: str, *, max_bytes: int,
             allow_nonfinite: bool) -> np.ndarray:
    """A request's TensorProto -> a checked array for ``spec`` (as REST's JSON becomes one).

    The declared shape is checked against the data before anything is allocated: a huge shape
    with a single value (which TensorFlow would repeat) is refused past ``max_bytes``."""
    tf_name = _TF_NAMES.get(proto.dtype, str(proto.dtype))
    datatype = _DATATYPE_OF_TF.get(tf_name)
    if datatype is None:
        raise ClientError(f"{where}: dtype {tf_name} is not supported; model input '{spec.name}' is {spec.tf_dtype}")
    if proto.tensor_shape.unknown_rank:
        raise ClientError(f"{where}: tensor_shape must be known")
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise ClientError(f"{where}: tensor_shape {shape} has a negative dimension")
    count = tensors.element_count(shape)
    declared = DATATYPES[datatype][0]
    if proto.tensor_content and datatype != tensors.BYTES:
        expected = count * declared.itemsize
        if len(proto.tensor_content) != expected:
            raise ClientError(
                f"{where}: tensor_shape {shape} of {tf_name} needs {expected} bytes of tensor_content, "
                f"got {len(proto.tensor_content)}"
            )
        array = np.frombuffer(proto.tensor_content, dtype=declared).reshape(shape)
        if declared.kind == "b" and array.size and array.view(np.uint8).max() > 1:
            raise ClientError(f"{where}: DT_BOOL bytes must be 0 or 1")
    else:
        values = getattr(proto, _VALUES[tf_name])
        if len(values) == count:
            array = _typed(values, tf_name, declared, where).reshape(shape)
        elif len(values) == 1 and count * max(declared.itemsize, 1) <= max_bytes:
            # TensorFlow's rule: a single value fills the whole shape.
            array = np.full(shape, _typed(values, tf_name, declared, where)[0], dtype=declared)
        else:
            raise ClientError(
                f"{where}: tensor_shape {shape[:8]} holds {count} elements, "
                f"{_VALUES[tf_name]} has {len(values)}"[:300]
            )
    return tensors.convert(array, spec, where, allow_nonfinite=allow_nonfinite)


def _typed(values: Any, tf_name: str, declared: np.dtype, where: str) -> np.ndarray:
    if tf_name == "DT_STRING":
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array
    if tf_name == "DT_HALF":  # half_val carries each value's 16 bits
        return np.array(values, dtype=np.uint16).view(np.float16)
    if declared.kind in "iu" and declared.itemsize < 8:  # int_val is int32: narrower types check range
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(declared)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise ClientError(f"{where}: values out of range for {tf_name}")
        return wide.astype(declared)
    return np.array(values, dtype=declared)


def fill(proto: tensor_pb2.TensorProto, array: np.ndarray, spec: TensorSpec) -> None:
    """A result as TF Serving sends it: numbers in ``tensor_content``, strings in ``string_val``."""
    proto.dtype = types_pb2.DataType.Value(spec.tf_dtype)
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if spec.is_bytes:
        proto.string_val.extend(array.reshape(-1).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(array, dtype=spec.dtype.newbyteorder("<")).tobytes()


def pinned(spec: model_pb2.ModelSpec) -> tuple[str, str | None, str | None]:
    """A ModelSpec's model name and the version or label it pins (neither: the newest)."""
    if not spec.name:
        raise ClientError("model_spec.name is required")
    has_version, label = spec.HasField("version"), spec.version_label or None
    if has_version and label is not None:
        raise ClientError("model_spec: give 'version' or 'version_label', not both")
    return spec.name, str(spec.version.value) if has_version else None, label


def _tensor_info(info: TensorInfo) -> meta_graph_pb2.TensorInfo:
    out = meta_graph_pb2.TensorInfo(name=info.name, dtype=types_pb2.DataType.Value(info.dtype))
    if info.dims is None:
        out.tensor_shape.unknown_rank = True
    else:
        out.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in info.dims)
    return out


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, settings: InferenceSettings, store: ModelStore[ServedVersion], model_calls: ModelCalls) -> None:
        self._settings = settings
        self._store = store
        self._calls = model_calls

    @handler
    def Predict(self, request: predict_pb2.PredictRequest, rpc: Rpc) -> predict_pb2.PredictResponse:  # noqa: N802
        name = request.model_spec.name

        def predict(call: Call) -> predict_pb2.PredictResponse:
            name, version, label = pinned(request.model_spec)
            resolved, served = calls.lookup(self._store, name, version, label)
            call.version = resolved
            timing = call.measure()
            decoding = time.perf_counter()
            settings = self._settings
            signature = served.servable.signature(request.model_spec.signature_name or None)
            protocol_tfs.check_names(request.inputs, signature.inputs, "inputs")
            arrays = protocol_tfs.one_batch([
                to_array(request.inputs[s.name], s, f"inputs['{s.name}']", max_bytes=settings.max_body_bytes,
                         allow_nonfinite=settings.allow_nonfinite)
                for s in signature.inputs
            ], "inputs")
            wanted = list(request.output_filter)
            outputs = signature.outputs
            chosen = [i for i, s in enumerate(outputs) if not wanted or s.name in wanted]
            unknown = set(wanted) - {s.name for s in outputs}
            if unknown:
                raise ClientError(f"output_filter: unknown outputs {sorted(unknown)}; model outputs are "
                                  f"{sorted(s.name for s in outputs)}"[:300])
            timing.compute_input = time.perf_counter() - decoding
            timing.batcher = batcher_timing = Timing()
            results = served.batcher_for(signature).submit(
                arrays, rpc.timeout(settings.request_timeout), call.arrived, batcher_timing
            )
            encoding = time.perf_counter()
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = resolved
            response.model_spec.signature_name = signature.name
            for index in chosen:
                fill(response.outputs[outputs[index].name], results[index], outputs[index])
            timing.compute_output = time.perf_counter() - encoding
            return response

        return self._calls.run(rpc, "tfs_grpc", name, PREDICT, predict)

    @handler
    def GetModelMetadata(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        fields = list(request.metadata_field)
        if not fields:
            raise ClientError("metadata_field must name at least one field: signature_def")
        if set(fields) != {"signature_def"}:
            raise ClientError(f"metadata_field: only signature_def is available, got {sorted(set(fields))}"[:300])
        name, version, label = pinned(request.model_spec)
        resolved, served = calls.lookup(self._store, name, version, label)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in served.servable.signature_defs.items():
            target = signatures.signature_def[key]
            target.method_name = sig.method_name
            for group, infos in ((target.inputs, sig.inputs), (target.outputs, sig.outputs)):
                for tensor, info in infos.items():
                    group[tensor].CopyFrom(_tensor_info(info))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = resolved
        response.metadata["signature_def"].Pack(signatures)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, store: ModelStore[ServedVersion]) -> None:
        self._store = store

    @handler
    def GetModelStatus(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        name, version, label = pinned(request.model_spec)
        model = self._store.model(name)
        statuses = sorted(model.statuses.values(), key=lambda s: s.version, reverse=True)
        if label is not None:
            version = str(self._store.labelled(name, label))
        if version is not None:
            statuses = [s for s in statuses if str(s.version) == version]
            if not statuses:
                raise NotFound(f"model '{name}' version '{version[:40]}' not found")
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add(version=status.version, state=_STATE.Value(status.state))
            entry.status.error_code = _ERROR_CODES["UNKNOWN" if status.error else "OK"].number
            entry.status.error_message = status.error
        return response


def add(
    server: grpc.Server, settings: InferenceSettings, store: ModelStore[ServedVersion], model_calls: ModelCalls,
) -> frozenset[str]:
    """Register TF Serving's services on ``server``; returns their names (for health checks)."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(settings, store, model_calls), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(store), server)
    return SERVICES
