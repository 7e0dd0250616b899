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
