"""``modelserver_load_shed_total`` counts admission refusals only, not every 503."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from flask import Flask

from services.common.errors import register_error_handlers
from services.inference import routes
from services.inference.config import load_settings
from services.inference.metrics import metrics
from services.inference.model_store import ModelStore
from services.inference.repository import Repository
from services.runtime import lifecycle


class _Admission:
    def observe(self, seconds: float) -> None:
        pass


@pytest.fixture
def loading(tmp_path: Path):
    """An app whose only model version is still loading (its loader waits for the test)."""
    version = tmp_path / "digits" / "1"
    version.mkdir(parents=True)
    (version / "model.keras").write_bytes(b"not read: the loader below never opens it")
    release = threading.Event()

    def load(name: str, number: int, directory: Path) -> object:
        release.wait(10)
        raise RuntimeError("never loads")

    store = ModelStore(tmp_path, load)
    scan = threading.Thread(target=store.scan, kwargs={"initial": True})
    scan.start()
    while not store.names():
        time.sleep(0.01)
    settings = load_settings(model_root=tmp_path, queue_budget_ms=50.0)
    app = Flask(__name__)
    register_error_handlers(app)
    app.register_blueprint(
        routes.build(
            store, settings, metrics(), _Admission(), Repository(tmp_path / "repository", store, wait_seconds=1)
        )
    )
    yield app.test_client()
    release.set()
    scan.join(10)
    lifecycle.mark_arrival(None)


def test_a_loading_model_is_503_but_not_shed_and_an_admission_refusal_is(loading):
    shed = metrics().load_shed.labels("digits")
    before = shed._value.get()
    body = {"instances": [[0.0]]}

    still_loading = loading.post("/v1/models/digits/versions/1:predict", json=body)
    assert still_loading.status_code == 503 and "is loading" in still_loading.get_json()["error"]
    assert loading.post("/v2/models/digits/infer", json={"inputs": []}).status_code == 503
    assert shed._value.get() == before

    lifecycle.mark_arrival(time.monotonic() - 1.0)  # waited 1 s for a thread: over the 50 ms budget
    refused = loading.post("/v1/models/digits:predict", json=body)
    assert refused.status_code == 503 and refused.get_json()["error"].startswith("overloaded")
    assert refused.headers["Retry-After"] == "1"
    assert shed._value.get() == before + 1
