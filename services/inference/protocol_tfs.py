"""TensorFlow Serving's REST API: request parsing and response shapes, exactly as TF Serving's.

https://www.tensorflow.org/tfx/serving/api_rest — row format (``instances`` -> ``predictions``)
and columnar format (``inputs`` -> ``outputs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.errors import ClientError
from services.inference.model_store import VersionStatus
from services.inference.tensors import TensorSpec, from_json

if TYPE_CHECKING:
    from services.inference.servable import Servable

SIGNATURE = "serving_default"


def parse_predict(
    payload: Any, servable: Servable, *, allow_nonfinite: bool
) -> tuple[list[np.ndarray], bool]:
    """-> one array per model input, and whether the request used the row format."""
    if not isinstance(payload, dict):
        raise ClientError("request body must be a JSON object with 'instances' or 'inputs'")
    signature = payload.get("signature_name", SIGNATURE)
    if signature not in (SIGNATURE, ""):
        raise ClientError(f"serving signature name '{signature}' not found; this model has '{SIGNATURE}'"[:300])
    has_rows, has_columns = "instances" in payload, "inputs" in payload
    if has_rows == has_columns:
        raise ClientError("request must have exactly one of 'instances' (row format) or 'inputs' (columnar)")
    specs = servable.inputs
    if has_rows:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise ClientError("'instances' must be a non-empty list, one element per example")
        if isinstance(instances[0], dict):
            columns = _rows_to_columns(instances, specs)
        elif len(specs) == 1:
            columns = {specs[0].name: instances}
        else:
            raise ClientError(
                f"model has inputs {[s.name for s in specs]}: each instance must be an object keyed by them"
            )
        where = "instances"
    else:
        inputs = payload["inputs"]
        if isinstance(inputs, dict):
            columns = inputs
        elif len(specs) == 1:
            columns = {specs[0].name: inputs}
        else:
            raise ClientError(f"model has inputs {[s.name for s in specs]}: 'inputs' must be an object keyed by them")
        where = "inputs"
    arrays = _arrays(columns, specs, where, allow_nonfinite)
    rows = {a.shape[0] for a in arrays}
    if len(rows) > 1:
        raise ClientError(f"{where}: inputs disagree on the batch size: {sorted(rows)}")
    return arrays, has_rows


def _rows_to_columns(instances: list[Any], specs: Sequence[TensorSpec]) -> dict[str, list[Any]]:
    names = [s.name for s in specs]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(names):
            raise ClientError(
                f"instances[{index}]: expected an object with keys {names}, "
                f"got {sorted(instance) if isinstance(instance, dict) else type(instance).__name__}"[:300]
            )
        for name in names:
            columns[name].append(instance[name])
    return columns


def _arrays(
    columns: dict[str, Any], specs: Sequence[TensorSpec], where: str, allow_nonfinite: bool
) -> list[np.ndarray]:
    names = {s.name for s in specs}
    unknown = set(columns) - names
    missing = names - set(columns)
    if unknown or missing:
        raise ClientError(
            f"{where}: model inputs are {sorted(names)}; "
            + (f"missing {sorted(missing)}" if missing else f"unknown {sorted(unknown)}"[:200])
        )
    return [
        from_json(columns[s.name], s, f"{where}['{s.name}']" if len(specs) > 1 else where,
                  allow_nonfinite=allow_nonfinite)
        for s in specs
    ]


def predict_response(outputs: list[np.ndarray], servable: Servable, row_format: bool) -> dict[str, Any]:
    names = [s.name for s in servable.outputs]
    if row_format:
        if len(outputs) == 1:
            return {"predictions": outputs[0]}
        return {
            "predictions": [
                {name: out[i] for name, out in zip(names, outputs, strict=True)}
                for i in range(outputs[0].shape[0])
            ]
        }
    if len(outputs) == 1:
        return {"outputs": outputs[0]}
    return {"outputs": dict(zip(names, outputs, strict=True))}


def status_response(statuses: Sequence[VersionStatus]) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {
                    "error_code": "UNKNOWN" if s.error else "OK",
                    "error_message": s.error,
                },
            }
            for s in statuses
        ]
    }


def _tensor_info(spec: TensorSpec, tensor_name: str) -> dict[str, Any]:
    return {
        "dtype": spec.tf_dtype,
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in spec.wire_shape],
            "unknown_rank": False,
        },
        "name": tensor_name,
    }


def metadata_response(name: str, version: int, servable: Servable) -> dict[str, Any]:
    signature = {
        "inputs": {s.name: _tensor_info(s, f"serving_default_{s.name}:0") for s in servable.inputs},
        "outputs": {
            s.name: _tensor_info(s, f"StatefulPartitionedCall:{i}")
            for i, s in enumerate(servable.outputs)
        },
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        # The doubled "signature_def" nesting is what TF Serving really returns.
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    }
