from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import models


@pytest.fixture(scope="session")
def digits_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/digits/1 trained once per session, exactly as `make model` trains it."""
    return models.train_digits(tmp_path_factory.mktemp("trained"), 1)


@pytest.fixture(scope="session")
def multi_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.multi_input_model(tmp_path_factory.mktemp("multi") / "1")


@pytest.fixture(scope="session")
def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """The held-out split the model was evaluated on (pixels, labels)."""
    from tools.train_digits import load_data

    _, x_test, _, y_test = load_data()
    return x_test, y_test


@pytest.fixture
def model_root(tmp_path: Path, digits_version: Path) -> Path:
    root = tmp_path / "models"
    models.copy_version(digits_version, root, "digits", 1)
    return root


@pytest.fixture(scope="session")
def digits_savedmodel(tmp_path_factory: pytest.TempPathFactory, digits_version: Path) -> Path:
    """The trained digits model exported by Keras 3's model.export (a SavedModel)."""
    return models.export_savedmodel(digits_version, tmp_path_factory.mktemp("exported") / "1")


@pytest.fixture(scope="session")
def two_signatures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tf.saved_model.save module with two signatures (numbers; strings)."""
    return models.two_signature_module(tmp_path_factory.mktemp("two") / "1")
