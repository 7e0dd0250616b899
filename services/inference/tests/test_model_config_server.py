"""TF Serving's model config file and version labels, served for real: Gunicorn, HTTP, edits
of the file while requests flow."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from stack.load import Load
from tests.support import models
from tests.support.servers import start_inference

pytestmark = pytest.mark.slow

PIXELS = [[[[0.5]] * 8] * 8]  # one digits instance, shape (8, 8, 1)


def config(*entries: str) -> str:
    return "model_config_list {\n" + "\n".join(f"  config {{ {e} }}" for e in entries) + "\n}\n"


def write(path: Path, text: str) -> None:
    """Replace the file in one rename, as a ConfigMap update or an editor's save does."""
    staging = path.with_name(f".{path.name}.new")
    staging.write_text(text)
    staging.replace(path)


def wait_for(check: Callable[[], object], what: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def versions(url: str, name: str) -> dict[str, str]:
    response = requests.get(f"{url}/v1/models/{name}", timeout=10)
    if response.status_code != 200:
        return {}
    return {s["version"]: s["state"] for s in response.json()["model_version_status"]}


def labelled_version(url: str, name: str, label: str) -> str | None:
    response = requests.get(f"{url}/v1/models/{name}/labels/{label}/metadata", timeout=10)
    return response.json()["model_spec"]["version"] if response.status_code == 200 else None


def requests_by_version(url: str, name: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    pattern = re.compile(
        rf'^modelserver_requests_total\{{model="{name}",protocol="tfs",status="200",version="(\d+)"\}} (\S+)$'
    )
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        found = pattern.match(line)
        if found:
            counts[found.group(1)] = counts.get(found.group(1), 0) + float(found.group(2))
    return counts


def errors(url: str) -> dict[str, str]:
    return requests.get(f"{url}/readyz", timeout=10).json()["errors"]


@pytest.fixture
def layout(tmp_path: Path, digits_version: Path) -> Path:
    """``conf/models.config`` beside ``conf/one/`` (digits 1, 2, 3); ``elsewhere/two/`` (1, 2)."""
    conf = tmp_path / "conf"
    for version in (1, 2, 3):
        models.copy_version(digits_version, conf, "one", version)
    for version in (1, 2):
        models.copy_version(digits_version, tmp_path / "elsewhere", "two", version)
    return conf


def start(layout: Path, text: str, log: Path, **env: str):  # noqa: ANN201
    path = layout / "models.config"
    write(path, text)
    return start_inference(
        layout.parent / "unused-root", log,
        env={"INFERENCE_MODEL_CONFIG_FILE": str(path), "INFERENCE_MODEL_CONFIG_POLL_SECONDS": "0.2", **env},
    )


def test_two_models_from_two_base_paths_with_policies_and_labels(layout, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "two"
    text = config(
        "name: 'digits' base_path: 'one' model_platform: 'tensorflow' "
        "model_version_policy { specific { versions: 1 versions: 3 } } "
        "version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 3 }",
        f'name: "second" base_path: "{elsewhere}" model_version_policy: {{ all: {{}} }}',
        "name: 'newest' base_path: 'one' model_version_policy { latest { num_versions: 1 } }",
    )
    process, url = start(layout, text, tmp_path / "server.log")
    try:
        assert versions(url, "digits") == {"3": "AVAILABLE", "1": "AVAILABLE"}  # 2 is not in `specific`
        assert versions(url, "second") == {"2": "AVAILABLE", "1": "AVAILABLE"}
        assert versions(url, "newest") == {"3": "AVAILABLE"}
        assert requests.get(f"{url}/readyz").json()["models"] == {"digits": 3, "newest": 3, "second": 2}
        # Triton's model configuration states each model's own policy.
        policies = {m: requests.get(f"{url}/v2/models/{m}/config").json()["version_policy"]
                    for m in ("digits", "second", "newest")}
        assert policies == {"digits": {"specific": {"versions": [1, 3]}}, "second": {"all": {}},
                            "newest": {"latest": {"num_versions": 1}}}

        stable = requests.get(f"{url}/v1/models/digits/labels/stable")
        assert stable.status_code == 200 and stable.json() == {
            "name": "digits", "ready": True, "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
        assert labelled_version(url, "digits", "stable") == "1"
        assert labelled_version(url, "digits", "canary") == "3"
        before = requests_by_version(url, "digits")
        by_path = requests.post(f"{url}/v1/models/digits/labels/stable:predict", json={"instances": PIXELS})
        assert by_path.status_code == 200, by_path.text
        assert len(by_path.json()["predictions"][0]) == 10
        by_body = requests.post(f"{url}/v1/models/digits:predict", json={
            "model_spec": {"name": "digits", "version_label": "stable"}, "instances": PIXELS})
        assert by_body.status_code == 200, by_body.text
        assert by_body.json() == by_path.json()
        after = requests_by_version(url, "digits")
        assert after.get("1", 0) - before.get("1", 0) == 2  # both went to version 1, not the default 3

        unknown = requests.get(f"{url}/v1/models/digits/labels/nope/metadata")
        assert unknown.status_code == 404 and "no version label 'nope'" in unknown.json()["error"]
        assert (
            requests.post(f"{url}/v1/models/digits/labels/nope:predict", json={"instances": PIXELS}).status_code == 404
        )
        assert requests.get(f"{url}/v1/models/second/labels/stable").status_code == 404
        assert requests.get(f"{url}/v1/models/absent/labels/stable").status_code == 404
        contradicting = requests.post(f"{url}/v1/models/digits/labels/canary:predict", json={
            "model_spec": {"version_label": "stable"}, "instances": PIXELS})
        assert contradicting.status_code == 400 and "another version than the path" in contradicting.json()["error"]
        assert errors(url) == {}
    finally:
        assert process.stop() == 0, process.log_tail()


def test_bad_edits_are_refused_and_serving_goes_on(layout, tmp_path):
    entry = ("name: 'digits' base_path: 'one' model_version_policy { specific { versions: 1 } } "
             "version_labels { key: 'stable' value: 1 }")
    good = config(entry)
    process, url = start(layout, good, tmp_path / "server.log")
    path = layout / "models.config"
    predict = lambda: requests.post(f"{url}/v1/models/digits/labels/stable:predict", json={"instances": PIXELS})  # noqa: E731
    try:
        # A label naming a version that is not loaded: refused, the label stays where it was.
        write(path, good.replace("value: 1", "value: 2"))
        message = wait_for(lambda: errors(url).get("digits"), "the label refusal reported")
        assert message == "label 'stable': version 2 is not available; still version 1"
        assert labelled_version(url, "digits", "stable") == "1" and predict().status_code == 200

        for broken, fragment in [
            ("model_config_list {\n  config {\n    name: 'digits'\n", ":3: unexpected end of file"),
            (good.replace("base_path: 'one'", "base_path: 'one' model_platform: 'onnx'"),
             "model_platform 'onnx' is not supported"),
        ]:
            write(path, broken)
            reported = wait_for(
                lambda fragment=fragment: (lambda e: fragment in e and e)(errors(url).get("", "")),
                f"{fragment} reported",
            )
            assert "model config file rejected, the last good one stays in force" in reported
            assert f"{path}:" in reported and fragment in reported, reported
            assert "modelserver_model_config_rejected 1.0" in requests.get(f"{url}/metrics").text
            assert predict().status_code == 200
            assert versions(url, "digits") == {"1": "AVAILABLE"}
        assert "model config file rejected" in process.log_tail(100)

        # A model added with a base path that does not exist: reported, and the rest stays ready.
        write(path, config(entry, "name: 'typo' base_path: 'no-such-dir'"))
        reported = wait_for(lambda: errors(url).get("typo"), "the missing base path reported")
        assert "cannot read" in reported and "no-such-dir" in reported
        assert requests.get(f"{url}/readyz").status_code == 200 and predict().status_code == 200

        write(path, good)
        wait_for(lambda: "" not in errors(url) and not errors(url), "the good file clears the errors")
        assert requests.get(f"{url}/v1/models/typo").status_code == 404  # gone with the edit
        assert "modelserver_model_config_rejected 0.0" in requests.get(f"{url}/metrics").text
    finally:
        assert process.stop() == 0, process.log_tail()


def test_a_bad_file_at_start_stops_the_start_with_its_place(layout, tmp_path):
    with pytest.raises(RuntimeError) as raised:
        start(layout, config("name: 'digits' base_path: 'one' model_platform: 'pytorch'"), tmp_path / "server.log")
    assert "INFERENCE_MODEL_CONFIG_FILE" in str(raised.value)
    assert "models.config:2: config 'digits': model_platform 'pytorch' is not supported" in str(raised.value)


def test_config_edits_and_label_moves_under_load_lose_no_request(layout, tmp_path):
    """Add a model, move a label, change a policy: every request in flight meanwhile succeeds."""
    first = ("name: 'digits' base_path: 'one' model_version_policy { specific { versions: 1 } } "
             "version_labels { key: 'stable' value: 1 }")
    # Admission limits out of the way: this is about config edits, not overload (five versions
    # warming up on a shared 2-core machine can push the expected wait past the 1 s budget).
    process, url = start(layout, config(first), tmp_path / "server.log", INFERENCE_WORKERS="2",
                         INFERENCE_QUEUE_BUDGET_MS="60000", INFERENCE_MAX_QUEUE_ROWS="1000000")
    path = layout / "models.config"

    refused: list[str] = []  # what each non-200 said, for the failure message

    def noted(response: requests.Response) -> requests.Response:
        if response.status_code != 200:
            refused.append(f"{response.request.url} {response.status_code} {response.text[:200]}")
        return response

    def send(session: requests.Session) -> requests.Response:
        return noted(
            session.post(f"{url}/v1/models/digits/labels/stable:predict", json={"instances": PIXELS}, timeout=30)
        )

    def send_default(session: requests.Session) -> requests.Response:
        return noted(session.post(f"{url}/v1/models/digits:predict", json={"instances": PIXELS}, timeout=30))

    try:
        with Load(send, concurrency=3, max_seconds=120) as by_label, \
                Load(send_default, concurrency=2, max_seconds=120) as by_default:
            by_label.wait_for(50)
            # 1. Version 2 joins (policy change) and a second model is added; the label stays.
            second = ("name: 'second' base_path: '../elsewhere/two'".replace("../", str(tmp_path) + "/"))
            write(path, config(first.replace("versions: 1", "versions: 1 versions: 2"), second))
            wait_for(lambda: versions(url, "digits") == {"2": "AVAILABLE", "1": "AVAILABLE"}
                     and versions(url, "second").get("2") == "AVAILABLE", "version 2 and model 'second' loaded")
            # 2. The label moves to version 2.
            moved = first.replace("versions: 1", "versions: 1 versions: 2").replace("value: 1", "value: 2")
            write(path, config(moved, second))
            wait_for(lambda: all(labelled_version(url, "digits", "stable") == "2" for _ in range(6)),
                     "the label on version 2 in both workers")
            at_move = by_label.result.total
            # 3. The policy becomes the newest two: 3 loads, 1 retires, the label on 2 keeps serving.
            write(
                path,
                config(moved.replace("specific { versions: 1 versions: 2 }", "latest { num_versions: 2 }"), second),
            )
            wait_for(lambda: all(versions(url, "digits") == {"3": "AVAILABLE", "2": "AVAILABLE", "1": "END"}
                                 for _ in range(6)), "version 3 loaded and 1 retired in both workers")
            by_label.wait_for(at_move + 100)
        for load in (by_label, by_default):
            result = load.result
            assert result.total > 100 and result.failures == 0, (result.statuses, result.errors, refused[:5])
        served = requests_by_version(url, "digits")
        assert served.get("1", 0) > 0 and served.get("2", 0) > 0, served
        assert requests.post(f"{url}/v1/models/second:predict", json={"instances": PIXELS}).status_code == 200
        assert errors(url) == {}
    finally:
        assert process.stop() == 0, process.log_tail()
