"""One loaded model version: its signatures, each a compiled call. With savedmodel.py, the only
modules that import TF."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import ClientError
from services.inference import formats
from services.inference.tensors import SignatureDef, TensorInfo, TensorSpec

log = logging.getLogger(__name__)

LABELS_FILE = "labels.txt"
DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default signature key
PREDICT_METHOD = "tensorflow/serving/predict"


class LoadError(Exception):
    """A version cannot be served: unreadable, unsafe, or without a usable signature."""


def configure_tensorflow(intra_op_threads: int) -> None:
    """Size TF's thread pools; must run before TensorFlow executes its first op in this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        # One inter-op thread: our models are single chains of ops; more threads only contend.
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.warning("TensorFlow already initialised; thread settings unchanged")


def tensor_spec(name: str, dtype: Any, shape: Sequence[int | None] | None) -> TensorSpec:
    """A servable tensor: a dtype the protocols carry and a batch dimension first."""
    if shape is None:
        raise LoadError(f"tensor '{name}' has an unknown rank; a batch dimension must come first")
    shape = tuple(shape)
    if not shape or shape[0] is not None:
        raise LoadError(f"tensor '{name}' has no batch dimension (shape {shape})")
    try:
        spec = TensorSpec(name=name, dtype=np.dtype(str(dtype)), shape=shape)
        spec.datatype  # noqa: B018  (raises for dtypes the protocols cannot carry)
    except (ValueError, TypeError) as error:
        raise LoadError(f"tensor '{name}': unsupported dtype: {error}") from None
    return spec


@dataclass(frozen=True)
class Signature:
    """One callable signature: named inputs in, named outputs out, rows first."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    call: Callable[..., Sequence[Any]] = field(repr=False, compare=False)  # inputs' order -> outputs'

    def predict(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch: one array per input, rows first; returns one array per output."""
        import tensorflow as tf

        try:
            return [tensor.numpy() for tensor in self.call(*arrays)]
        except tf.errors.InvalidArgumentError as error:
            # Values the signature admits but the model cannot take (an index past an
            # embedding table, say): the request's fault, not the server's.
            message = (error.message or "").strip().splitlines()[0][:200]
            raise ClientError(f"model rejected the input: {message}") from None

    def takes_strings(self) -> bool:
        return any(spec.is_bytes for spec in self.inputs)

    def matches(self, other: Signature) -> bool:
        mine, theirs = self.inputs + self.outputs, other.inputs + other.outputs
        return len(self.inputs) == len(other.inputs) and len(mine) == len(theirs) and all(
            a.compatible_with(b) for a, b in zip(mine, theirs, strict=True)
        )


@dataclass
class Servable:
    name: str
    version: int
    signatures: Mapping[str, Signature]  # always has DEFAULT_SIGNATURE
    labels: tuple[str, ...] = ()
    platform: str = formats.KERAS.platform
    model_file: str = formats.KERAS.model_file
    # Every signature the model records, as TF Serving's metadata shows them (also those not
    # served here, like a SavedModel's __saved_model_init_op).
    signature_defs: Mapping[str, SignatureDef] = field(default_factory=dict)
    # Signatures that cannot be served, and why (asked for by name: a 400 that says so).
    unservable: Mapping[str, str] = field(default_factory=dict)

    @property
    def default(self) -> Signature:
        return self.signatures[DEFAULT_SIGNATURE]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.default.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.default.outputs

    def signature(self, name: str | None) -> Signature:
        """The signature a request names (TF Serving's ``signature_name``; "" or None: default)."""
        if not name:
            return self.default
        found = self.signatures.get(name)
        if found is not None:
            return found
        if name in self.unservable:
            raise ClientError(f"serving signature '{name}' cannot be served: {self.unservable[name]}"[:300])
        raise ClientError(
            f"serving signature name '{name}' not found; this model has {sorted(self.signatures)}"[:300]
        )

    def predict(self, arrays: Sequence[np.ndarray], signature: str = DEFAULT_SIGNATURE) -> list[np.ndarray]:
        return self.signatures[signature].predict(arrays)

    @classmethod
    def load(cls, name: str, version: int, directory: Path) -> Servable:
        try:
            found = formats.detect(directory)
        except formats.FormatError as error:
            raise LoadError(str(error)) from None
        if found == formats.SAVEDMODEL:
            from services.inference import savedmodel

            signatures, defs, unservable = savedmodel.load(directory)
        else:
            signatures, defs, unservable = _load_keras(directory / found.model_file), {}, {}
        labels_path = directory / LABELS_FILE
        labels = tuple(labels_path.read_text().split("\n")) if labels_path.exists() else ()
        return cls(
            name=name, version=version, signatures=signatures,
            labels=tuple(label for label in labels if label), platform=found.platform,
            model_file=found.model_file, signature_defs=defs or describe(signatures),
            unservable=unservable,
        )

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run every signature at each batch size once, so the first real requests pay no set-up."""
        for signature in self.signatures.values():
            for rows in batch_sizes:
                try:
                    results = signature.predict([spec.example(rows) for spec in signature.inputs])
                except ClientError:
                    if signature.takes_strings():
                        break  # empty strings need not be valid input (an encoded image, say)
                    raise
                for spec, result in zip(signature.outputs, results, strict=True):
                    if result.shape[:1] != (rows,):
                        raise LoadError(
                            f"signature '{signature.name}' output '{spec.name}' returned "
                            f"{result.shape[:1]} rows for {rows} inputs; batch dimension must map row to row"
                        )

    def signature_matches(self, other: Servable) -> bool:
        """Same signature names, each with the same inputs and outputs."""
        return set(self.signatures) == set(other.signatures) and all(
            s.matches(other.signatures[n]) for n, s in self.signatures.items()
        )


def describe(signatures: Mapping[str, Signature]) -> dict[str, SignatureDef]:
    """SignatureDefs for a model that records none (a .keras file), with the tensor names that
    Keras' own SavedModel export would give."""

    def info(spec: TensorSpec, tensor: str) -> TensorInfo:
        return TensorInfo(spec.tf_dtype, tuple(spec.wire_shape), tensor)

    return {
        name: SignatureDef(
            inputs={s.name: info(s, f"{name}_{s.name}:0") for s in sig.inputs},
            outputs={s.name: info(s, f"StatefulPartitionedCall:{i}") for i, s in enumerate(sig.outputs)},
            method_name=PREDICT_METHOD,
        )
        for name, sig in signatures.items()
    }


def _load_keras(path: Path) -> dict[str, Signature]:
    import keras
    import tensorflow as tf

    try:
        # safe_mode refuses models that would run arbitrary Python (Lambda layers, pickles).
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for bad files; all mean "cannot load".
        raise LoadError(f"cannot load {path}: {type(error).__name__}: {error}"[:500]) from None
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise LoadError(f"{path}: model has no fixed inputs/outputs (subclassed model?)")
    try:
        inputs = tuple(tensor_spec(t.name, t.dtype, t.shape) for t in model.inputs)
        outputs = tuple(
            tensor_spec(n, t.dtype, t.shape) for n, t in zip(model.output_names, model.outputs, strict=True)
        )
    except LoadError as error:
        raise LoadError(f"{path}: unsupported signature: {error}") from None

    structure = model.input
    output_names = list(model.output_names)

    def call(*tensors: Any) -> list[Any]:
        packed = keras.tree.pack_sequence_as(structure, list(tensors))
        result = model(packed, training=False)
        if isinstance(result, dict):
            return [result[n] for n in output_names]
        if isinstance(result, (list, tuple)):
            return list(result)
        return [result]

    signature = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in inputs]
    # A concrete function of a tf.function with a batch-free signature: traced once, and
    # called without Keras' per-call Python overhead (what makes model.predict slow per request).
    compiled = tf.function(call, input_signature=signature).get_concrete_function()
    return {DEFAULT_SIGNATURE: Signature(DEFAULT_SIGNATURE, inputs, outputs, compiled)}
