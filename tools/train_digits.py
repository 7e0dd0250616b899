"""Train the default model: a small CNN on scikit-learn's bundled digits (offline, seconds).

Writes ``<out>/<version>/model.keras`` and ``labels.txt``. Inputs are 8x8x1 float32 pixels in
[0, 1] (the data set's 0..16 values / 16); outputs are 10 class probabilities.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SEED = 0
MIN_ACCURACY = 0.95


def load_data():  # noqa: ANN201
    """The digits images scaled to [0, 1], split 80/20 with a fixed seed (shared with tests)."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(x, digits.target, test_size=0.2, random_state=SEED, stratify=digits.target)


def build_model(seed: int = SEED):  # noqa: ANN201
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits")


def train(out: Path, version: int, epochs: int, seed: int = SEED) -> float:
    x_train, x_test, y_train, y_test = load_data()
    model = build_model(seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    target = out / str(version)
    target.mkdir(parents=True, exist_ok=True)
    # Write beside, then rename: a server polling the directory never sees a half-written file.
    partial = target / ".model.keras.partial.keras"
    model.save(partial)
    (target / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    partial.rename(target / "model.keras")
    return float(accuracy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/digits"), help="model directory")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    started = time.perf_counter()
    accuracy = train(args.out, args.version, args.epochs, args.seed)
    seconds = time.perf_counter() - started
    print(f"trained {args.out}/{args.version}/model.keras: held-out accuracy {accuracy:.4f} in {seconds:.1f} s")
    if accuracy < MIN_ACCURACY:
        print(f"accuracy below {MIN_ACCURACY}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
