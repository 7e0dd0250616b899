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


def make_store(root: Path, on_change=None, **settings) -> ModelStore:
    config = load_settings(model_root=root, max_batch_size=4, **settings)
    return ModelStore(
        root, loader(config, metrics()), kept_versions=config.kept_versions,
        allow_signature_change=config.allow_signature_change, on_change=on_change,
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
    changes = []  # the app publishes its metrics (modelserver_model_load_failed) from these
    store = make_store(model_root, on_change=lambda model: changes.append(dict(model.statuses)))
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
    assert changes[-1][2].error == status.error  # the failure was announced
    # Unchanged bad files are not retried on every poll.
    announced = len(changes)
    store.scan()
    assert store.model("digits").statuses[2].error == status.error
    assert len(changes) == announced
    # Its files removed, it is no longer reported as failed (and announced so).
    shutil.rmtree(target)
    store.scan()
    assert store.model("digits").statuses[2] == type(status)(2, END)
    assert changes[-1][2].error == "" and len(changes) == announced + 1


def test_a_savedmodel_loads_once_its_variables_settle_too(tmp_path, two_signatures):
    root = tmp_path / "models"
    models.copy_version(two_signatures, root, "two", 1)
    store = make_store(root)
    store.scan(initial=True)
    assert store.get("two")[1].servable.platform == "tensorflow_savedmodel"
    target = models.copy_version(two_signatures, root, "two", 2)
    store.scan()  # first sight
    (target / "variables" / "variables.data-00000-of-00001").touch()  # still being written
    store.scan()
    assert store.get("two")[0] == 1 and 2 not in store.model("two").statuses
    store.scan()
    version, served = store.get("two")
    assert version == 2 and set(served.batchers) == {"serving_default", "classify_cats_vs_dogs"}


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


def test_an_unloaded_model_serves_nothing_and_loads_at_once_when_asked(model_root, digits_version):
    unloaded: set[str] = set()
    config = load_settings(model_root=model_root, max_batch_size=4)
    store = ModelStore(model_root, loader(config, metrics()), unloaded=lambda: frozenset(unloaded))
    store.scan(initial=True)
    assert store.ready() and store.get("digits")[0] == 1
    unloaded.add("digits")
    store.scan()
    assert not store.model("digits").served and store.model("digits").statuses[1].state == END
    assert store.ready()  # unloaded on purpose: not a model still loading
    add_version(digits_version, model_root, 2)
    store.scan()
    assert not store.model("digits").served  # a new version of an unloaded model stays out
    unloaded.clear()
    store.scan(now={"digits"})  # asked for by name: no wait for the files to settle
    assert sorted(store.model("digits").served) == [1, 2]


def test_config_sources_policies_and_labels_that_follow_loading(model_root, digits_version, tmp_path):
    from services.inference.model_store import ModelSource

    add_version(digits_version, model_root, 2)
    store = make_store(tmp_path / "unused")
    base = model_root / "digits"
    store.configure({"d": ModelSource("d", base, None, frozenset({1}), {"stable": 1, "next": 2})})
    store.scan(initial=True)
    assert sorted(store.model("d").served) == [1] and store.labelled("d", "stable") == 1
    with pytest.raises(NotFound, match="no version label 'next'"):
        store.labelled("d", "next")  # version 2 is not loaded: the label is refused
    assert store.errors() == {"d": "label 'next': version 2 is not available; not assigned"}
    # Move 'stable' to 2 before 2 is served: it stays on 1 ...
    store.configure({"d": ModelSource("d", base, None, frozenset({1}), {"stable": 2})})
    store.scan()
    assert store.labelled("d", "stable") == 1 and "still version 1" in store.errors()["d"]
    # ... and moves once the policy lets 2 load; retiring 1 then leaves the label on 2.
    changed = store.configure({"d": ModelSource("d", base, 1, None, {"stable": 2})})
    store.scan(now=changed)
    assert sorted(store.model("d").served) == [2] and store.labelled("d", "stable") == 2
    assert store.errors() == {}
    # A version a label names stays loaded past the policy until the label moves off it.
    add_version(digits_version, model_root, 3)
    store.configure({"d": ModelSource("d", base, 1, None, {"stable": 2, "old": 2})})
    store.scan(initial=True)
    assert sorted(store.model("d").served) == [2, 3]
    assert store.get_labelled("d", "stable")[0] == 2
    store.configure({"d": ModelSource("d", base, 1, None, {"stable": 3})})
    store.scan()
    assert sorted(store.model("d").served) == [3] and store.get_labelled("d", "stable")[0] == 3
    # A model added later with a wrong base path is reported, and does not make the store unready.
    store.configure({"d": ModelSource("d", base, 1), "typo": ModelSource("typo", tmp_path / "nope", 1)})
    store.scan()
    assert store.ready() and "cannot read" in store.errors()["typo"]
    store.configure({})
    store.scan()
    assert store.names() == [] and not store.ready()
