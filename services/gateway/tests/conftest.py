from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.support import models
from tests.support.servers import Process, start_inference


def write_routes(path: Path, routes: dict[str, dict]) -> Path:
    """Write a routes file atomically (a reader never sees half of it)."""
    staging = path.with_suffix(".tmp")
    staging.write_text(yaml.safe_dump({"models": routes}))
    staging.replace(path)
    return path


@pytest.fixture(scope="session")
def gateway_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits versions 1 and 2 (the same weights: a canary test needs two versions, not two models).

    Trained briefly: these tests check the gateway, not the model's accuracy."""
    trained = models.train_digits(tmp_path_factory.mktemp("gateway-trained"), 1, epochs=3)
    root = tmp_path_factory.mktemp("gateway-served") / "models"
    models.copy_version(trained, root, "digits", 1)
    models.copy_version(trained, root, "digits", 2)
    return root


@pytest.fixture(scope="module")
def replicas(gateway_model_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Three real inference servers (the third is there to be killed), started side by side."""
    logs = tmp_path_factory.mktemp("replicas")
    with ThreadPoolExecutor(3) as pool:
        started = list(pool.map(lambda i: start_inference(gateway_model_root, logs / f"inference-{i}.log"),
                                range(3)))
    yield started
    for process, _ in started:
        process.stop(signal.SIGKILL)


def address(url: str) -> str:
    return url.removeprefix("http://")


def stop_cleanly(process: Process) -> None:
    assert process.stop() == 0, process.log_tail()
