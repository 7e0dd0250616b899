"""TensorFlow Serving's REST API: request parsing and response shapes, exactly as TF Serving's.

https://www.tensorflow.org/tfx/serving/api_rest — row format (``instances`` -> ``predictions``)
and columnar format (``inputs`` -> ``outputs``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.errors import ClientError
from services.inference.model_store import VersionStatus
from services.inference.tensors import SignatureDef, TensorInfo, TensorSpec, from_json, strings_to_json

if TYPE_CHECKING:
    from services.inference.servable import Servable, Signature

# A string output whose name ends so is binary: TF Serving sends it as {"b64": ...}.
BINARY_SUFFIX = "_bytes"


def model_spec(
    payload: Any, name: str, version: str | None, label: str | None
) -> tuple[str | None, str | None] | None:
    """The (version, label) a predict body's ``model_spec`` pins (gRPC's ModelSpec as JSON:
    ``name``, ``version`` or ``version_label``), when the path pins neither; None: nothing new.
    A body that contradicts its path is refused rather than silently obeyed or ignored."""
    spec = payload.get("model_spec") if isinstance(payload, dict) else None
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ClientError("'model_spec' must be an object")
    if "signature_name" in spec:
        raise ClientError(
            "model_spec.signature_name: give 'signature_name' beside 'instances' or 'inputs', "
            "as TF Serving's REST API does"
        )
    unknown = set(spec) - {"name", "version", "version_label"}
    if unknown:
        raise ClientError(f"model_spec: unknown fields {sorted(unknown)}"[:300])
    if spec.get("name", name) != name:
        raise ClientError(f"model_spec.name {str(spec['name'])[:60]!r} is not the model of the path, '{name}'")
    body_version, body_label = spec.get("version"), spec.get("version_label")
    if body_version is not None and body_label is not None:
        raise ClientError("model_spec: give 'version' or 'version_label', not both")
    if body_version is not None:
        if isinstance(body_version, bool) or not isinstance(body_version, (int, str)):
            raise ClientError("model_spec.version must be an integer (or its string)")
        body_version = str(body_version)
    if body_label is not None and not isinstance(body_label, str):
        raise ClientError("model_spec.version_label must be a string")
    if body_version is None and body_label is None:
        return None
    if version is not None or label is not None:
        if (body_version, body_label) != (version, label):
            raise ClientError("model_spec pins another version than the path; give one of them")
        return None
    return body_version, body_label


@dataclass(frozen=True)
class Predict:
    signature: Signature
    arrays: list[np.ndarray]  # one per signature input, in its order
    row_format: bool  # "instances" (else columnar "inputs")


def _is_b64(value: Any) -> bool:
    """TF Serving's binary value ``{"b64": ...}``: a value, not an object keyed by input names."""
    return isinstance(value, dict) and set(value) == {"b64"}


def parse_predict(payload: Any, servable: Servable, *, allow_nonfinite: bool) -> Predict:
    """-> the signature asked for (``signature_name``), one array per input, and the format."""
    if not isinstance(payload, dict):
        raise ClientError("request body must be a JSON object with 'instances' or 'inputs'")
    name = payload.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise ClientError("'signature_name' must be a string")
    signature = servable.signature(name)
    has_rows, has_columns = "instances" in payload, "inputs" in payload
    if has_rows == has_columns:
        raise ClientError("request must have exactly one of 'instances' (row format) or 'inputs' (columnar)")
    specs = signature.inputs
    if has_rows:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise ClientError("'instances' must be a non-empty list, one element per example")
        if isinstance(instances[0], dict) and not (len(specs) == 1 and _is_b64(instances[0])):
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
        if isinstance(inputs, dict) and not (len(specs) == 1 and _is_b64(inputs)):
            columns = inputs
        elif len(specs) == 1:
            columns = {specs[0].name: inputs}
        else:
            raise ClientError(f"model has inputs {[s.name for s in specs]}: 'inputs' must be an object keyed by them")
        where = "inputs"
    return Predict(signature, one_batch(_arrays(columns, specs, where, allow_nonfinite), where), has_rows)


def one_batch(arrays: list[np.ndarray], where: str) -> list[np.ndarray]:
    """``arrays`` when every input has the same number of rows."""
    rows = {a.shape[0] for a in arrays}
    if len(rows) > 1:
        raise ClientError(f"{where}: inputs disagree on the batch size: {sorted(rows)}")
    return arrays


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
    check_names(columns, specs, where)
    return [
        from_json(columns[s.name], s, f"{where}['{s.name}']" if len(specs) > 1 else where,
                  allow_nonfinite=allow_nonfinite)
        for s in specs
    ]


def check_names(columns: Mapping[str, Any], specs: Sequence[TensorSpec], where: str) -> None:
    """A request names every input of the signature and nothing else."""
    names = {s.name for s in specs}
    unknown = set(columns) - names
    missing = names - set(columns)
    if unknown or missing:
        raise ClientError(
            f"{where}: model inputs are {sorted(names)}; "
            + (f"missing {sorted(missing)}" if missing else f"unknown {sorted(unknown)}"[:200])
        )


def predict_response(outputs: list[np.ndarray], signature: Signature, row_format: bool) -> dict[str, Any]:
    names = [s.name for s in signature.outputs]
    outputs = [_json_ready(out, spec) for out, spec in zip(outputs, signature.outputs, strict=True)]
    if row_format:
        if len(outputs) == 1:
            return {"predictions": outputs[0]}
        return {
            "predictions": [
                {name: out[i] for name, out in zip(names, outputs, strict=True)}
                for i in range(len(outputs[0]))
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


def _json_ready(array: np.ndarray, spec: TensorSpec) -> Any:
    """Numbers stay arrays (orjson writes them); strings become text, or b64 for ``*_bytes``."""
    if not spec.is_bytes:
        return array
    return strings_to_json(array, b64=spec.name.endswith(BINARY_SUFFIX))


def _tensor_info(info: TensorInfo) -> dict[str, Any]:
    shape: dict[str, Any] = (
        {"dim": [], "unknown_rank": True} if info.dims is None
        else {"dim": [{"size": str(d), "name": ""} for d in info.dims], "unknown_rank": False}
    )
    return {"dtype": info.dtype, "tensor_shape": shape, "name": info.name}


def _signature_def(sig: SignatureDef) -> dict[str, Any]:
    def tensors(group: Mapping[str, TensorInfo]) -> dict[str, Any]:
        return {key: _tensor_info(info) for key, info in group.items()}

    return {"inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs), "method_name": sig.method_name}


def metadata_response(name: str, version: int, servable: Servable) -> dict[str, Any]:
    """Every signature the model records (TF Serving shows them all), key order as TF Serving's."""
    signatures = {key: _signature_def(sig) for key, sig in servable.signature_defs.items()}
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        # The doubled "signature_def" nesting is what TF Serving really returns.
        "metadata": {"signature_def": {"signature_def": signatures}},
    }
