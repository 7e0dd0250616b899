"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService``, on the messages
``tritonclient.grpc`` ships (Triton's, a superset of KServe's V2 protocol).

Inputs come as typed ``contents`` or as ``raw_input_contents`` (the binary extension's layout,
one entry per input, in order); outputs go back the way the inputs came, as Triton's clients
expect raw ones from raw requests. Both become the REST side's ``protocol_v2.InferRequest``.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2, service_pb2_grpc

from services import __version__
from services.common import metrics as metrics_endpoint
from services.common.errors import ClientError, Unavailable
from services.inference import calls, protocol_v2, statistics, tensors
from services.inference.batching import Timing
from services.inference.calls import Call
from services.inference.config import InferenceSettings
from services.inference.grpc_server import ModelCalls, Rpc, handler
from services.inference.model_store import ModelStore
from services.inference.protocol_v2 import InferRequest
from services.inference.repository import Repository
from services.inference.serving import ServedVersion
from services.inference.tensors import TensorSpec
from services.protocol import facts

INFER = "/inference.GRPCInferenceService/ModelInfer"
SERVICES = frozenset({"inference.GRPCInferenceService"})


def _string_parameter(parameters: Any, key: str) -> str | None:
    if key not in parameters:
        return None
    parameter = parameters[key]
    if parameter.WhichOneof("parameter_choice") != "string_param":
        raise ClientError(f"parameters.{key} must be a string")
    return parameter.string_param


def from_contents(tensor: Any, spec: TensorSpec, where: str, *, allow_nonfinite: bool) -> np.ndarray:
    """An input's typed ``contents`` -> a checked array, as REST's typed JSON becomes one."""
    datatype, shape = tensor.datatype, tensors.parse_shape(list(tensor.shape), where)
    if datatype not in tensors.DATATYPES:
        raise ClientError(f"{where}: unknown datatype {datatype[:20]!r}; expected one of {sorted(tensors.DATATYPES)}")
    field = facts.GRPC_CONTENTS.get(datatype)
    if field is None:
        raise ClientError(f"{where}: {datatype} has no typed contents; send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    if datatype != tensors.BYTES:
        return tensors.from_typed_json(list(values), datatype, shape, spec, where, allow_nonfinite=allow_nonfinite)
    if len(values) != tensors.element_count(shape):
        raise ClientError(f"{where}: shape {shape} holds {tensors.element_count(shape)} elements, "
                          f"bytes_contents has {len(values)}")
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return tensors.convert(array.reshape(shape), spec, where, allow_nonfinite=allow_nonfinite)


def parse_infer(request: Any, servable: Any, *, allow_nonfinite: bool) -> InferRequest:
    """-> the request as REST's parser gives it; outputs raw when the inputs came raw."""
    if not request.inputs:
        raise ClientError("'inputs' must be a non-empty list of tensors")
    signature = servable.signature(_string_parameter(request.parameters, protocol_v2.SIGNATURE_PARAMETER))
    specs = {s.name: s for s in signature.inputs}
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ClientError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: one per input, in order"
        )
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        spec = protocol_v2.input_spec(specs, tensor.name, arrays, f"inputs[{index}]")
        where = f"input '{tensor.name}'"
        if raw:
            arrays[tensor.name] = tensors.from_bytes(
                raw[index], tensor.datatype, tensors.parse_shape(list(tensor.shape), where), spec, where,
                allow_nonfinite=allow_nonfinite,
            )
        else:
            arrays[tensor.name] = from_contents(tensor, spec, where, allow_nonfinite=allow_nonfinite)
    outputs = signature.outputs
    typed_ok = bool(raw) or all(facts.GRPC_CONTENTS.get(s.datatype) for s in outputs)
    as_raw = bool(raw) or not typed_ok  # FP16 has no typed contents: then every output is raw
    chosen = [(protocol_v2.output_index(outputs, o.name), as_raw) for o in request.outputs] or [
        (i, as_raw) for i in range(len(outputs))
    ]
    return InferRequest(request.id or None, signature, protocol_v2.ordered_inputs(signature, arrays), chosen)


def infer_response(name: str, version: int, request: InferRequest, results: list[np.ndarray]) -> Any:
    response = service_pb2.ModelInferResponse(model_name=name, model_version=str(version), id=request.id or "")
    for index, raw in request.outputs:
        spec, result = request.signature.outputs[index], results[index]
        output = response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(result.shape))
        if raw:
            response.raw_output_contents.append(protocol_v2.raw_bytes(result, spec))
        else:
            getattr(output.contents, facts.GRPC_CONTENTS[spec.datatype]).extend(result.reshape(-1).tolist())
    return response


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self, settings: InferenceSettings, store: ModelStore[ServedVersion], model_calls: ModelCalls, repo: Repository,
    ) -> None:
        self._settings = settings
        self._store = store
        self._calls = model_calls
        self._repo = repo
        self._scheduling = calls.scheduling(settings)

    def _lookup(self, name: str, version: str) -> tuple[int, ServedVersion]:
        return calls.lookup(self._store, name, version or None)

    @handler
    def ServerLive(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802  (gRPC's names)
        return service_pb2.ServerLiveResponse(live=True)

    @handler
    def ServerReady(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=calls.readiness(self._store, self._settings)[0])

    @handler
    def ModelReady(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        try:
            self._lookup(request.name, request.version)
        except Unavailable:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    @handler
    def ServerMetadata(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        return json_format.ParseDict(protocol_v2.server_metadata(__version__), service_pb2.ServerMetadataResponse())

    @handler
    def ModelMetadata(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        _, served = self._lookup(request.name, request.version)
        versions = sorted(self._store.model(request.name).served)
        return json_format.ParseDict(
            protocol_v2.model_metadata(request.name, versions, served.servable), service_pb2.ModelMetadataResponse()
        )

    @handler
    def ModelConfig(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        _, served = self._lookup(request.name, request.version)
        config = calls.config_of(self._store, request.name, served, self._scheduling)
        return json_format.ParseDict({"config": config}, service_pb2.ModelConfigResponse(), ignore_unknown_fields=True)

    @handler
    def ModelStatistics(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        selected = calls.stats_selection(self._store, request.name, request.version or None)
        report = statistics.report(metrics_endpoint.samples(statistics.PREFIX), selected)
        return json_format.ParseDict(report, service_pb2.ModelStatisticsResponse())

    @handler
    def RepositoryIndex(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        return json_format.ParseDict(
            {"models": self._repo.index(ready_only=request.ready)}, service_pb2.RepositoryIndexResponse()
        )

    def _control(self, request: Any, rpc: Rpc) -> None:
        calls.check_control(self._settings.repository_control, rpc.peer_host())

    @handler
    def RepositoryModelLoad(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        self._control(request, rpc)
        if "config" in request.parameters:
            raise ClientError("a 'config' parameter is not supported: the model's own signature is its configuration")
        self._repo.load(request.model_name)
        return service_pb2.RepositoryModelLoadResponse()

    @handler
    def RepositoryModelUnload(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        self._control(request, rpc)
        self._repo.unload(request.model_name)
        return service_pb2.RepositoryModelUnloadResponse()

    @handler
    def ModelInfer(self, request: Any, rpc: Rpc) -> Any:  # noqa: N802
        name = request.model_name

        def infer(call: Call) -> Any:
            resolved, served = self._lookup(name, request.model_version)
            call.version = resolved
            timing = call.measure()
            decoding = time.perf_counter()
            parsed = parse_infer(request, served.servable, allow_nonfinite=self._settings.allow_nonfinite)
            timing.compute_input = time.perf_counter() - decoding
            timing.batcher = batcher_timing = Timing()
            results = served.batcher_for(parsed.signature).submit(
                parsed.arrays, rpc.timeout(self._settings.request_timeout), call.arrived, batcher_timing
            )
            encoding = time.perf_counter()
            response = infer_response(name, resolved, parsed, results)
            timing.compute_output = time.perf_counter() - encoding
            return response

        return self._calls.run(rpc, "v2_grpc", name, INFER, infer)


def add(
    server: grpc.Server, settings: InferenceSettings, store: ModelStore[ServedVersion], model_calls: ModelCalls,
    repo: Repository,
) -> frozenset[str]:
    """Register the V2 service on ``server``; returns its name (for health checks)."""
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceService(settings, store, model_calls, repo), server
    )
    return SERVICES
