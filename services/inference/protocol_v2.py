"""The Open Inference Protocol (KServe V2 / Triton) over REST, with the binary tensor extension.

JSON requests carry tensors as (optionally flat) ``data`` lists. With the binary extension the
body is a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw little-endian
tensors, in the order the header lists them, each ``parameters.binary_data_size`` bytes long;
outputs come back the same way when asked for (``binary_data`` / ``binary_data_output``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common import jsoncodec, naturals
from services.common.errors import ClientError
from services.inference.tensors import TensorSpec, from_bytes, from_typed_json, strings_to_bytes, strings_to_json
from services.protocol.v2 import HEADER_LENGTH, server_metadata  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from services.inference.servable import Servable, Signature

# The request parameter that picks a SavedModel signature other than serving_default (the
# name TF Serving's request field has).
SIGNATURE_PARAMETER = "signature_name"


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    signature: Signature
    arrays: list[np.ndarray]  # one per signature input, in the signature's order
    outputs: list[tuple[int, bool]]  # (index into the signature's outputs, send as binary)


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    if header_length is None:
        return body, None
    if naturals.parse(header_length) is None or not 0 < int(header_length) <= len(body):
        raise ClientError(
            f"{HEADER_LENGTH} must be a positive integer no larger than the body "
            f"({len(body)} bytes), got {header_length[:40]!r}"
        )
    length = int(header_length)
    return body[:length], memoryview(body)[length:]


def parse_infer(
    payload: Any, binary: memoryview | None, servable: Servable, *, allow_nonfinite: bool
) -> InferRequest:
    if not isinstance(payload, dict):
        raise ClientError("request body must be a JSON object with an 'inputs' list")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ClientError("'id' must be a string")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ClientError("'inputs' must be a non-empty list of tensors")
    parameters = _parameters(payload)
    name = parameters.get(SIGNATURE_PARAMETER)
    if name is not None and not isinstance(name, str):
        raise ClientError(f"parameters.{SIGNATURE_PARAMETER} must be a string")
    signature = servable.signature(name)
    specs = {s.name: s for s in signature.inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise ClientError(f"{where}: must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        input_spec(specs, name, arrays, where)
        where = f"input '{name}'"
        shape = tensor.get("shape")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str):
            raise ClientError(f"{where}: 'datatype' must be a string such as \"FP32\"")
        size = _binary_size(tensor, where)
        if size is not None:
            if binary is None:
                raise ClientError(f"{where}: binary_data_size given but the request has no binary part")
            if offset + size > len(binary):
                raise ClientError(f"{where}: binary_data_size {size} runs past the end of the body")
            arrays[name] = from_bytes(
                binary[offset : offset + size], datatype, shape, specs[name], where,
                allow_nonfinite=allow_nonfinite,
            )
            offset += size
        elif "data" in tensor:
            arrays[name] = from_typed_json(
                tensor["data"], datatype, shape, specs[name], where, allow_nonfinite=allow_nonfinite
            )
        else:
            raise ClientError(f"{where}: has neither 'data' nor parameters.binary_data_size")
    if binary is not None and offset != len(binary):
        raise ClientError(f"binary part has {len(binary) - offset} bytes no input claims")
    return InferRequest(
        request_id, signature, ordered_inputs(signature, arrays), _requested_outputs(payload, signature.outputs)
    )


def input_spec(specs: dict[str, TensorSpec], name: Any, given: dict[str, np.ndarray], where: str) -> TensorSpec:
    """The model input a request's tensor names, once."""
    if not isinstance(name, str) or name not in specs:  # a list or object is unhashable
        raise ClientError(f"{where}: unknown input {name!r}; model inputs are {sorted(specs)}"[:300])
    if name in given:
        raise ClientError(f"{where}: input '{name}' given twice")
    return specs[name]


def ordered_inputs(signature: Signature, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every input of ``signature``, in its order, with one batch size."""
    names = {s.name for s in signature.inputs}
    missing = names - set(arrays)
    if missing:
        raise ClientError(f"missing inputs {sorted(missing)}; model inputs are {sorted(names)}")
    ordered = [arrays[s.name] for s in signature.inputs]
    if len({a.shape[0] for a in ordered}) > 1:
        raise ClientError("inputs disagree on the batch size (first dimension)")
    return ordered


def output_index(specs: Sequence[TensorSpec], name: Any) -> int:
    """Which output of the model a request asks for by ``name``."""
    for index, spec in enumerate(specs):
        if spec.name == name:
            return index
    raise ClientError(f"unknown output {name!r}; model outputs are {sorted(s.name for s in specs)}"[:300])


def _parameters(payload: dict[str, Any]) -> dict[str, Any]:
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ClientError("'parameters' must be an object")
    return parameters


def _binary_size(tensor: dict[str, Any], where: str) -> int | None:
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ClientError(f"{where}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ClientError(f"{where}: binary_data_size must be a non-negative integer")
    return size


def _requested_outputs(payload: dict[str, Any], specs: Sequence[TensorSpec]) -> list[tuple[int, bool]]:
    parameters = _parameters(payload)
    all_binary = bool(parameters.get("binary_data_output", False))
    requested = payload.get("outputs")
    if requested is None:
        return [(i, all_binary) for i in range(len(specs))]
    if not isinstance(requested, list):
        raise ClientError("'outputs' must be a list of {\"name\": ...} objects")
    chosen = []
    for entry in requested:
        name = entry.get("name") if isinstance(entry, dict) else None
        index = output_index(specs, name)
        options = entry.get("parameters") or {}
        binary = options.get("binary_data", all_binary) if isinstance(options, dict) else all_binary
        chosen.append((index, bool(binary)))
    return chosen


def infer_response(
    name: str, version: int, request: InferRequest, results: list[np.ndarray]
) -> tuple[bytes, int | None]:
    """-> the response body, and the JSON header's length when binary outputs follow it."""
    outputs, chunks = [], []
    for index, binary in request.outputs:
        spec, result = request.signature.outputs[index], results[index]
        entry: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(result.shape)}
        if binary:
            raw = raw_bytes(result, spec)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif spec.is_bytes:
            entry["data"] = strings_to_json(result.reshape(-1))
        else:
            entry["data"] = np.ascontiguousarray(result).reshape(-1)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    header = jsoncodec.dumps(body)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def raw_bytes(result: np.ndarray, spec: TensorSpec) -> bytes:
    """An output in the binary layout (the binary extension's and gRPC's raw contents)."""
    if spec.is_bytes:
        return strings_to_bytes(result)
    return np.ascontiguousarray(result, dtype=spec.dtype.newbyteorder("<")).tobytes()


def model_metadata(name: str, versions: Sequence[int], servable: Servable) -> dict[str, Any]:
    def describe(spec: TensorSpec) -> dict[str, Any]:
        return {"name": spec.name, "datatype": spec.datatype, "shape": spec.wire_shape}

    return {
        "name": name,
        "versions": [str(v) for v in sorted(versions)],
        "platform": servable.platform,
        "inputs": [describe(s) for s in servable.inputs],
        "outputs": [describe(s) for s in servable.outputs],
    }
