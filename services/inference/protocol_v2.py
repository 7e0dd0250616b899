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
from services.common.v2 import HEADER_LENGTH, server_metadata  # noqa: F401  (re-exported)
from services.inference.tensors import TensorSpec, from_bytes, from_typed_json

if TYPE_CHECKING:
    from services.inference.servable import Servable

PLATFORM = "tensorflow_keras"


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    arrays: list[np.ndarray]  # one per model input, in the model's order
    outputs: list[tuple[int, bool]]  # (index into the model's outputs, send as binary)


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
    specs = {s.name: s for s in servable.inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise ClientError(f"{where}: must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str) or name not in specs:  # a list or object is unhashable
            raise ClientError(f"{where}: unknown input {name!r}; model inputs are {sorted(specs)}"[:300])
        if name in arrays:
            raise ClientError(f"{where}: input '{name}' given twice")
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
    missing = set(specs) - set(arrays)
    if missing:
        raise ClientError(f"missing inputs {sorted(missing)}; model inputs are {sorted(specs)}")
    ordered = [arrays[s.name] for s in servable.inputs]
    if len({a.shape[0] for a in ordered}) > 1:
        raise ClientError("inputs disagree on the batch size (first dimension)")
    return InferRequest(request_id, ordered, _requested_outputs(payload, servable.outputs))


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
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ClientError("'parameters' must be an object")
    all_binary = bool(parameters.get("binary_data_output", False))
    requested = payload.get("outputs")
    if requested is None:
        return [(i, all_binary) for i in range(len(specs))]
    if not isinstance(requested, list):
        raise ClientError("'outputs' must be a list of {\"name\": ...} objects")
    index = {s.name: i for i, s in enumerate(specs)}
    chosen = []
    for entry in requested:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in index:
            raise ClientError(f"unknown output {name!r}; model outputs are {sorted(index)}"[:300])
        options = entry.get("parameters") or {}
        binary = options.get("binary_data", all_binary) if isinstance(options, dict) else all_binary
        chosen.append((index[name], bool(binary)))
    return chosen


def infer_response(
    name: str, version: int, request: InferRequest, results: list[np.ndarray], servable: Servable
) -> tuple[bytes, int | None]:
    """-> the response body, and the JSON header's length when binary outputs follow it."""
    outputs, chunks = [], []
    for index, binary in request.outputs:
        spec, result = servable.outputs[index], results[index]
        entry: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(result.shape)}
        if binary:
            raw = np.ascontiguousarray(result, dtype=spec.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
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


def model_metadata(name: str, versions: Sequence[int], servable: Servable) -> dict[str, Any]:
    def describe(spec: TensorSpec) -> dict[str, Any]:
        return {"name": spec.name, "datatype": spec.datatype, "shape": spec.wire_shape}

    return {
        "name": name,
        "versions": [str(v) for v in sorted(versions)],
        "platform": PLATFORM,
        "inputs": [describe(s) for s in servable.inputs],
        "outputs": [describe(s) for s in servable.outputs],
    }
