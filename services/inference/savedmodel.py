"""A SavedModel version, loaded as TensorFlow Serving loads it: the MetaGraph tagged ``serve``,
its SignatureDefs (what the metadata shows) and its signature functions (what requests call).

What runs is the saved graph only: ``tf.saved_model.load`` restores functions and variables and
executes no Python from the directory (SECURITY.md says what graph ops can still reach).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.inference.formats import SAVEDMODEL
from services.inference.servable import DEFAULT_SIGNATURE, LoadError, Signature, tensor_spec
from services.inference.tensors import SignatureDef, TensorInfo, TensorSpec

SERVE_TAG = "serve"  # the MetaGraph TF Serving loads (its --saved_model_tags default)


def load(directory: Path) -> tuple[dict[str, Signature], dict[str, SignatureDef], dict[str, str]]:
    """-> the servable signatures, every SignatureDef recorded, and those not servable (why)."""
    import tensorflow as tf

    graph = _meta_graph(directory / SAVEDMODEL.model_file)
    defs = {name: _signature_def(sig) for name, sig in sorted(graph.signature_def.items())}
    if DEFAULT_SIGNATURE not in defs:
        callable_ = sorted(n for n in defs if not n.startswith("__"))
        raise LoadError(
            f"{directory}: SavedModel has no '{DEFAULT_SIGNATURE}' signature (it has {callable_}); "
            f"save it with signatures={{'{DEFAULT_SIGNATURE}': ...}}"[:500]
        )
    try:
        loaded = tf.saved_model.load(str(directory), tags=[SERVE_TAG])
    except Exception as error:  # TF raises many types for bad directories; all mean "cannot load".
        raise LoadError(f"cannot load SavedModel {directory}: {type(error).__name__}: {error}"[:500]) from None
    signatures: dict[str, Signature] = {}
    unservable: dict[str, str] = {}
    for name, function in loaded.signatures.items():
        sig = graph.signature_def[name]
        try:
            inputs = tuple(_spec(key, sig.inputs[key]) for key in sorted(sig.inputs))
            outputs = tuple(_spec(key, sig.outputs[key]) for key in sorted(sig.outputs))
        except LoadError as error:
            unservable[name] = str(error)
            continue
        signatures[name] = Signature(name, inputs, outputs, _caller(loaded, function, inputs, outputs))
    if DEFAULT_SIGNATURE not in signatures:
        reason = unservable.get(DEFAULT_SIGNATURE, "not among the loaded signatures")
        raise LoadError(f"{directory}: signature '{DEFAULT_SIGNATURE}' cannot be served: {reason}"[:500])
    return signatures, defs, unservable


def _meta_graph(path: Path) -> Any:
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except (DecodeError, OSError, ValueError) as error:
        raise LoadError(f"cannot read {path}: not a SavedModel protocol buffer ({error})"[:500]) from None
    for graph in proto.meta_graphs:
        if SERVE_TAG in graph.meta_info_def.tags:
            return graph
    raise LoadError(f"{path}: no MetaGraph tagged '{SERVE_TAG}' (found {len(proto.meta_graphs)} MetaGraphs)")


def _signature_def(sig: Any) -> SignatureDef:
    from tensorflow.core.framework import types_pb2

    def info(tensor: Any) -> TensorInfo:
        shape = tensor.tensor_shape
        dims = None if shape.unknown_rank else tuple(d.size for d in shape.dim)
        return TensorInfo(types_pb2.DataType.Name(tensor.dtype), dims, tensor.name)

    return SignatureDef(
        inputs={key: info(sig.inputs[key]) for key in sorted(sig.inputs)},
        outputs={key: info(sig.outputs[key]) for key in sorted(sig.outputs)},
        method_name=sig.method_name,
    )


def _spec(key: str, tensor: Any) -> TensorSpec:
    import tensorflow as tf

    try:
        dtype = tf.dtypes.as_dtype(tensor.dtype)
    except TypeError:
        raise LoadError(f"tensor '{key}' has an unknown dtype ({tensor.dtype})") from None
    shape = tensor.tensor_shape
    dims = None if shape.unknown_rank else [None if d.size < 0 else d.size for d in shape.dim]
    return tensor_spec(key, "object" if dtype == tf.string else dtype.as_numpy_dtype.__name__, dims)


def _caller(owner: Any, function: Any, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> Any:
    """Positional arrays in ``inputs``' order -> outputs in ``outputs``' order (sorted by name,
    as TF Serving orders a signature's tensors)."""
    names = [spec.name for spec in inputs]
    wanted = [spec.name for spec in outputs]

    def call(*arrays: Any) -> list[Any]:
        result: Mapping[str, Any] = function(**dict(zip(names, arrays, strict=True)))
        return [result[name] for name in wanted]

    call.owner = owner  # type: ignore[attr-defined]  # the loaded object owns the variables
    return call
