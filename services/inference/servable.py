"""One loaded model version: its signature and a compiled call. The only module that imports TF."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.errors import ClientError
from services.inference.tensors import TensorSpec

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"


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


def _spec(name: str, dtype: Any, shape: Sequence[int | None]) -> TensorSpec:
    shape = tuple(shape)
    if not shape or shape[0] is not None:
        raise LoadError(f"tensor '{name}' has no batch dimension (shape {shape})")
    return TensorSpec(name=name, dtype=np.dtype(str(dtype)), shape=shape)


@dataclass
class Servable:
    name: str
    version: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    _call: Any

    @classmethod
    def load(cls, name: str, version: int, directory: Path) -> Servable:
        import keras
        import tensorflow as tf

        path = directory / MODEL_FILE
        try:
            # safe_mode refuses models that would run arbitrary Python (Lambda layers, pickles).
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:  # Keras raises many types for bad files; all mean "cannot load".
            raise LoadError(f"cannot load {path}: {type(error).__name__}: {error}"[:500]) from None
        if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
            raise LoadError(f"{path}: model has no fixed inputs/outputs (subclassed model?)")
        try:
            inputs = tuple(_spec(t.name, t.dtype, t.shape) for t in model.inputs)
            outputs = tuple(
                _spec(n, t.dtype, t.shape)
                for n, t in zip(model.output_names, model.outputs, strict=True)
            )
            for spec in inputs + outputs:
                spec.datatype  # noqa: B018  (raises for dtypes the protocols cannot carry)
        except (ValueError, TypeError) as error:
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
        labels_path = directory / LABELS_FILE
        labels = tuple(labels_path.read_text().split("\n")) if labels_path.exists() else ()
        return cls(
            name=name,
            version=version,
            inputs=inputs,
            outputs=outputs,
            labels=tuple(label for label in labels if label),
            _call=compiled,
        )

    def predict(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run one batch: one array per input, rows first; returns one array per output."""
        import tensorflow as tf

        try:
            return [tensor.numpy() for tensor in self._call(*arrays)]
        except tf.errors.InvalidArgumentError as error:
            # Values the signature admits but the model cannot take (an index past an
            # embedding table, say): the request's fault, not the server's.
            message = (error.message or "").strip().splitlines()[0][:200]
            raise ClientError(f"model rejected the input: {message}") from None

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run the model at each batch size once, so the first real requests pay no set-up."""
        for rows in batch_sizes:
            results = self.predict([spec.example(rows) for spec in self.inputs])
            for spec, result in zip(self.outputs, results, strict=True):
                if result.shape[0] != rows:
                    raise LoadError(
                        f"output '{spec.name}' returned {result.shape[0]} rows for {rows} inputs; "
                        "batch dimension must map row to row"
                    )

    def signature_matches(self, other: Servable) -> bool:
        return len(self.inputs) == len(other.inputs) and len(self.outputs) == len(other.outputs) and all(
            a.compatible_with(b)
            for a, b in zip(self.inputs + self.outputs, other.inputs + other.outputs, strict=True)
        )
