"""Fixtures every cross-service test shares: the trained default model and one local stack
(nginx → gateway → 2 inference replicas) per session, or a deployed stack by ``E2E_BASE_URL``.

They live here, above ``tests/e2e``, so that ``tests/hostile`` and ``tests/faults`` use the
same session stack instead of starting one each (a stack costs 20-40 s to start).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import start_stack
from tests.support import models


@pytest.fixture(scope="session")
def digits_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.train_digits(tmp_path_factory.mktemp("e2e-trained"), 1)


@pytest.fixture(scope="session")
def digits_data():
    from tools.train_digits import load_data

    _, x_test, _, y_test = load_data()
    return x_test, y_test


@pytest.fixture(scope="session")
def stack(tmp_path_factory, digits_version):
    """(base URL, LocalStack or None when testing a deployed stack)."""
    url = os.environ.get("E2E_BASE_URL")
    if url:
        yield url.rstrip("/"), None
        return
    # The status page on, as an operator would turn it on (tests/e2e/test_status_page.py).
    url, local = start_stack(tmp_path_factory.mktemp("stack"), digits_version,
                             env={"GATEWAY_STATUS_PAGE": "1"})
    yield url, local
    assert local.stop() == 0


@pytest.fixture
def local_stack(stack):
    url, local = stack
    if local is None:
        pytest.skip("needs the local stack (reaches inside it); see test_cluster.py for the cluster")
    return url, local
