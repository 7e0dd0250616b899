"""Real Keras models for tests, built on the spot (no downloads, seconds on a CPU)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def train_digits(root: Path, version: int = 1, epochs: int = 15) -> Path:
    """The default model, trained exactly as `make model` does; returns the version directory."""
    from tools.train_digits import train

    train(root / "digits", version, epochs)
    return root / "digits" / str(version)


def copy_version(source: Path, root: Path, name: str, version: int) -> Path:
    """Publish a copy of a version directory as ``root/name/version`` (atomic rename)."""
    target = root / name / str(version)
    staging = root / name / f".staging-{version}"
    shutil.copytree(source, staging)
    staging.rename(target)
    return target


def newest_version(root: Path, name: str) -> int:
    """The highest version published under ``root/name`` (a stack shared by several tests may
    have been upgraded already)."""
    from services.common import naturals

    versions = [naturals.parse(p.name) for p in (root / name).iterdir()]
    return max(v for v in versions if v is not None)


def multi_input_model(directory: Path) -> Path:
    """Three inputs of three dtypes (BOOL, INT64, FP64) and two outputs (FP32, FP64)."""
    import keras

    keras.utils.set_random_seed(1)
    ids = keras.Input((3,), dtype="int64", name="ids")
    flags = keras.Input((2,), dtype="bool", name="flags")
    scale = keras.Input((2,), dtype="float64", name="scale")
    embedded = keras.layers.Flatten(name="emb")(keras.layers.Embedding(10, 2)(ids))
    score = keras.layers.Dense(1, name="score", dtype="float64")(scale)
    model = keras.Model({"ids": ids, "flags": flags, "scale": scale}, {"emb": embedded, "score": score})
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / "model.keras")
    return directory


def lambda_model(directory: Path) -> Path:
    """A model with a Lambda layer: arbitrary Python that safe_mode must refuse to load."""
    import keras

    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    directory.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(directory / "model.keras")
    return directory


def other_signature_model(directory: Path) -> Path:
    """Same names as digits but a different input shape: a wrong signature for a new version."""
    import keras

    inputs = keras.Input((4, 4, 1), name="pixels")
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(keras.layers.Flatten()(inputs))
    directory.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(directory / "model.keras")
    return directory


def export_savedmodel(keras_version: Path, directory: Path) -> Path:
    """The same model as a SavedModel, written by Keras 3's ``model.export`` (what a Keras user
    hands TF Serving): ``serving_default`` takes the Keras inputs, returns ``output_0``."""
    import keras

    model = keras.saving.load_model(keras_version / "model.keras", compile=False, safe_mode=True)
    model.export(str(directory), format="tf_saved_model", verbose=False)
    return directory


def two_signature_module(directory: Path, scale: float = 1.0) -> Path:
    """A ``tf.saved_model.save`` module with two signatures, shaped after TF Serving's REST docs:
    ``serving_default`` (inputs ``signal`` [-1, 5] and ``sensor`` [-1, 2, 2], outputs ``total``
    and ``scaled``) and ``classify_cats_vs_dogs`` (string inputs ``image`` and ``caption``; outputs
    ``length``, ``caption_upper`` as text and ``image_bytes`` as binary, TF Serving's ``_bytes``
    rule)."""
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(tf.linspace(0.5, 2.5, 5) * scale)

        @tf.function(input_signature=[
            tf.TensorSpec([None, 5], tf.float32, name="signal"),
            tf.TensorSpec([None, 2, 2], tf.float32, name="sensor"),
        ])
        def predict(self, signal, sensor):
            scaled = signal * self.weights
            total = tf.reduce_sum(scaled, axis=1) + tf.reduce_sum(sensor, axis=[1, 2])
            return {"total": total, "scaled": scaled}

        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="image"),
            tf.TensorSpec([None], tf.string, name="caption"),
        ])
        def classify(self, image, caption):
            return {
                "length": tf.strings.length(image) + tf.strings.length(caption),
                "caption_upper": tf.strings.upper(caption),
                # The image's bytes reversed: any bytes, UTF-8 or not, must survive the trip.
                "image_bytes": tf.strings.reduce_join(
                    tf.reverse(tf.strings.bytes_split(image).to_tensor(), [1]), axis=1),
            }

    module = Module()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(directory), signatures={
        "serving_default": module.predict, "classify_cats_vs_dogs": module.classify,
    })
    return directory


def no_default_signature_module(directory: Path) -> Path:
    """A SavedModel whose only signature is not ``serving_default``: TF Serving cannot serve it
    by default, and neither do we."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def double(self, x):
            return {"y": x * 2.0}

    module = Module()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(directory), signatures={"double": module.double})
    return directory
