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
