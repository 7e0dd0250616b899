"""The model store over real Keras files: discovery, policy, swaps, and failures that must not hurt."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import NotFound
from services.inference.config import load_settings
from services.inference.metrics import metrics
from services.inference.model_store import AVAILABLE, END, ModelStore
from services.inference.serving import loader
from tests.support import models


def make_store(root: Path, **settings) -> ModelStore:
    config = load_settings(model_root=root, max_batch_size=4, **settings)
    return ModelStore(
        root, loader(config, metrics()), kept_versions=config.kept_versions,
        allow_signature_change=config.allow_signature_change,
    )


def add_version(source: Path, root: Path, version: int) -> None:
    models.copy_version(source, root, "digits", version)


def test_newest_version_serves_and_the_policy_bounds_what_is_loaded(model_root, digits_version):
    add_version(digits_version, model_root, 2)
    add_version(digits_version, model_root, 3)
    store = make_store(model_root)  # latest:2
    store.scan(initial=True)
    model = store.model("digits")
    assert sorted(model.served) == [2, 3]
    assert store.get("digits")[0] == 3
    assert store.get("digits", 2)[0] == 2
    with pytest.raises(NotFound):
        store.get("digits", 1)
    with pytest.raises(NotFound):
        store.get("nope")
    assert store.ready()


def test_a_new_version_is_loaded_once_its_file_settles_then_swapped_in(model_root, digits_version):
    store = make_store(model_root)
    store.scan(initial=True)
    version, old = store.get("digits")
    assert version == 1
    add_version(digits_version, model_root, 2)
    store.scan()  # first sight: waits for the copy to settle
    assert store.get("digits")[0] == 1
    store.scan()
    assert store.get("digits")[0] == 2
    # A request that resolved the old version before the swap can still finish on it.
    x = np.zeros((1, 8, 8, 1), np.float32)
    assert old.batcher.submit([x], 5.0)[0].shape == (1, 10)


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("garbage", "cannot load"),
        ("lambda", "Lambda"),
        ("signature", "signature differs from version 1"),
    ],
)
def test_a_bad_version_is_reported_and_never_replaces_the_serving_one(model_root, breakage, message):
    store = make_store(model_root)
    store.scan(initial=True)
    target = model_root / "digits" / "2"
    if breakage == "garbage":
        target.mkdir()
        (target / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    elif breakage == "lambda":
        models.lambda_model(target)
    else:
        models.other_signature_model(target)
    store.scan()
    store.scan()
    status = store.model("digits").statuses[2]
    assert status.state == END and message in status.error
    assert store.get("digits")[0] == 1
    assert store.model("digits").statuses[1].state == AVAILABLE
    # Unchanged bad files are not retried on every poll.
    store.scan()
    assert store.model("digits").statuses[2].error == status.error


def test_removed_versions_unload_but_never_the_last_one(model_root, digits_version):
    add_version(digits_version, model_root, 2)
    store = make_store(model_root)
    store.scan(initial=True)
    shutil.rmtree(model_root / "digits" / "2")
    store.scan()
    assert sorted(store.model("digits").served) == [1]
    shutil.rmtree(model_root / "digits" / "1")
    store.scan()
    assert sorted(store.model("digits").served) == [1]


def test_an_unreadable_model_root_is_reported_and_serving_continues(model_root):
    store = make_store(model_root)
    store.scan(initial=True)
    moved = model_root.with_name("elsewhere")
    model_root.rename(moved)
    store.scan()
    assert "cannot read model root" in store.root_error
    assert store.get("digits")[0] == 1
    moved.rename(model_root)
    store.scan()
    assert store.root_error == ""


def test_policy_all_keeps_every_version(model_root, digits_version):
    add_version(digits_version, model_root, 2)
    add_version(digits_version, model_root, 3)
    store = make_store(model_root, version_policy="all")
    store.scan(initial=True)
    assert sorted(store.model("digits").served) == [1, 2, 3]
