"""The two benchmark models, built offline: the default digits CNN and a larger CNN.

The digits model is the one `make model` trains (so the small-model numbers are the product's
own). The larger one is a ~2.7 M-parameter CNN on 32x32x3 inputs with random weights: what it
computes does not matter, only that its cost is dominated by the model call, not by HTTP.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class BenchModel:
    """A model as the harness sees it: where it is served and what one request carries."""

    name: str
    input_name: str
    input_shape: tuple[int, ...]  # one sample, without the batch dimension

    def version_dir(self, root: Path) -> Path:
        return root / self.name / "1"


DIGITS = BenchModel("digits", "pixels", (8, 8, 1))
CNN = BenchModel("cnn", "image", (32, 32, 3))
MODELS = (DIGITS, CNN)
# The same trained digits model as a SavedModel (Keras 3's model.export), for the format
# comparison; served beside the .keras one from a root of their own (the baselines read .keras).
DIGITS_SAVEDMODEL = BenchModel("digits_savedmodel", "pixels", (8, 8, 1))


def build_cnn(directory: Path, seed: int = 0) -> int:
    """Three conv stages (40/80/160 filters, two 3x3 convs each) and a 896-unit dense layer."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(CNN.input_shape, name=CNN.input_name)
    x = inputs
    for filters in (40, 80, 160):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(896, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="cnn")
    _save(model, directory)
    return model.count_params()


def _save(model, directory: Path) -> None:  # noqa: ANN001
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / ".model.keras.partial.keras"
    model.save(partial)
    partial.rename(directory / "model.keras")


def ensure_models(root: Path) -> dict[str, Path]:
    """Build whatever is missing under ``root``; returns each model's version directory."""
    from tools.train_digits import train

    if not (DIGITS.version_dir(root) / "model.keras").exists():
        train(root / DIGITS.name, 1, epochs=15)
    if not (CNN.version_dir(root) / "model.keras").exists():
        build_cnn(CNN.version_dir(root))
    return {m.name: m.version_dir(root) for m in MODELS}


def ensure_formats(root: Path, digits: Path) -> Path:
    """``root`` holding the digits model twice: ``digits/1/model.keras`` (a copy of ``digits``)
    and ``digits_savedmodel/1``, the same model exported by ``model.export``."""
    from tests.support.models import copy_version, export_savedmodel

    if not DIGITS.version_dir(root).exists():
        copy_version(digits, root, DIGITS.name, 1)
    exported = DIGITS_SAVEDMODEL.version_dir(root)
    if not exported.exists():
        staging = root / DIGITS_SAVEDMODEL.name / ".staging-1"
        export_savedmodel(digits, staging)
        staging.rename(exported)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the benchmark models (offline).")
    parser.add_argument("--root", type=Path, default=Path("reports/bench-models"))
    parser.add_argument("--formats-root", type=Path, help="also the digits model as .keras and SavedModel here")
    args = parser.parse_args()
    for name, directory in ensure_models(args.root).items():
        print(f"{name}: {directory / 'model.keras'}")
    if args.formats_root:
        ensure_formats(args.formats_root, DIGITS.version_dir(args.root))
        print(f"formats: {args.formats_root}")


if __name__ == "__main__":
    main()
