"""A model that would run code when loaded, dropped into the live model directory: refused by
Keras' safe mode on every replica, reported in the status, and the serving version carries on
without a failed request."""

from __future__ import annotations

import pickle
import shutil
import time
from pathlib import Path

import pytest
import requests

from stack.load import Load
from tests.support import models
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

EXAMPLE = (REPO / "examples/digit-0.json").read_bytes()


class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _lambda(directory: Path, tmp: Path) -> None:
    models.lambda_model(tmp / "lambda")
    shutil.copytree(tmp / "lambda", directory)


def _pickle(directory: Path, tmp: Path) -> None:
    directory.mkdir()
    (directory / "model.keras").write_bytes(pickle.dumps(_Payload(tmp / "unpickled")))


@pytest.mark.parametrize("make, version, fragment", [(_lambda, 900, "Lambda"), (_pickle, 901, "")],
                         ids=["lambda-layer", "pickle"])
def test_an_unsafe_model_is_refused_and_the_old_version_keeps_serving(local_stack, tmp_path, make, version,
                                                                     fragment):
    url, local = local_stack
    replicas = local.state["inference"]
    serving = {r: requests.get(f"{r}/readyz", timeout=5).json()["models"]["digits"] for r in replicas}
    staging = local.model_root / "digits" / f".staging-{version}"
    target = local.model_root / "digits" / str(version)

    def send(session: requests.Session) -> requests.Response:
        return session.post(f"{url}/v1/models/digits:predict", data=EXAMPLE, timeout=30)

    try:
        with Load(send, concurrency=4, max_seconds=60, max_requests=5000) as load:
            load.wait_for(50)
            make(staging, tmp_path)
            staging.rename(target)
            deadline = time.monotonic() + 30
            states: dict[str, dict] = {}
            while time.monotonic() < deadline:
                states = {r: _status(r, version) for r in replicas}
                if all(s.get("state") == "END" for s in states.values()):
                    break
                time.sleep(0.3)
            load.wait_for(load.result.total + 50)
        assert all(s.get("state") == "END" and s["status"]["error_message"] for s in states.values()), states
        assert all(fragment in s["status"]["error_message"] for s in states.values()), states
        assert load.result.failures == 0, (load.result.statuses, load.result.errors)
        assert {r: requests.get(f"{r}/readyz", timeout=5).json()["models"]["digits"] for r in replicas} == serving
        assert not (tmp_path / "unpickled").exists(), "a pickle was unpickled"
    finally:
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def _status(replica: str, version: int) -> dict:
    statuses = requests.get(f"{replica}/v1/models/digits", timeout=5).json()["model_version_status"]
    return next((s for s in statuses if s["version"] == str(version)), {})
