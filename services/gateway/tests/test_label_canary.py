"""A canary between version labels: the real gateway in front of a real inference server whose
labels come from TF Serving's model config file."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from services.gateway.tests.conftest import address, stop_cleanly, write_routes
from tests.support.servers import start_gateway, start_inference

pytestmark = pytest.mark.slow

PIXELS = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8, 1).tolist()
CONFIG = """model_config_list {
  config {
    name: "digits"
    base_path: "%s"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
"""


def served_by_version(url: str) -> dict[str, float]:
    pattern = re.compile(
        r'^modelserver_requests_total\{model="digits",protocol="(\w+)",status="200",version="(\d+)"\} (\S+)$'
    )
    counts: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        found = pattern.match(line)
        if found:
            key = f"{found.group(1)}:{found.group(2)}"
            counts[key] = counts.get(key, 0) + float(found.group(3))
    return counts


@pytest.fixture(scope="module")
def stack(gateway_model_root, tmp_path_factory):
    here = tmp_path_factory.mktemp("label-canary")
    config = here / "models.config"
    config.write_text(CONFIG % (gateway_model_root / "digits"))
    inference, inference_url = start_inference(here / "unused", here / "inference.log", env={
        "INFERENCE_MODEL_CONFIG_FILE": str(config)})
    routes = write_routes(here / "routes.yaml", {
        "digits": {"backends": [address(inference_url)], "labels": {"stable": 80, "canary": 20}},
    })
    gateway, url = start_gateway(routes, here / "gateway.log")
    yield url, inference_url
    stop_cleanly(gateway)
    stop_cleanly(inference)


def test_tf_serving_calls_split_between_the_labels_by_weight(stack):
    url, inference_url = stack
    before = served_by_version(inference_url)

    def predict(_: int) -> int:
        response = requests.post(f"{url}/v1/models/digits:predict", json={"instances": PIXELS}, timeout=30)
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(predict, range(1000)))
    assert statuses.count(200) == 1000, {s: statuses.count(s) for s in set(statuses)}
    after = served_by_version(inference_url)
    to_1 = after.get("tfs:1", 0) - before.get("tfs:1", 0)
    to_2 = after.get("tfs:2", 0) - before.get("tfs:2", 0)
    assert to_1 + to_2 == 1000
    assert abs(to_2 / 1000 - 0.20) <= 0.05, f"label 'canary' (version 2) got {to_2 / 10:.1f}%, weight 20%"

    listing = requests.get(f"{url}/v1/models").json()["models"][0]
    assert listing["canary"] == {"canary": 20, "stable": 80} and listing["canary_by"] == "label"


def test_label_paths_pass_through_and_v2_calls_take_the_default_version(stack):
    url, _ = stack
    stable = requests.get(f"{url}/v1/models/digits/labels/stable/metadata")
    assert stable.status_code == 200 and stable.json()["model_spec"]["version"] == "1"
    status = requests.get(f"{url}/v1/models/digits/labels/canary").json()
    assert [s["version"] for s in status["model_version_status"]] == ["2"]
    pinned = requests.post(f"{url}/v1/models/digits/labels/stable:predict", json={"instances": PIXELS})
    assert pinned.status_code == 200 and len(pinned.json()["predictions"][0]) == 10
    unknown = requests.post(f"{url}/v1/models/digits/labels/nope:predict", json={"instances": PIXELS})
    assert unknown.status_code == 404 and "no version label 'nope'" in unknown.json()["error"]
    malformed = requests.get(f"{url}/v1/models/digits/labels/-x/metadata")
    assert malformed.status_code == 404 and "no version label '-x'" in malformed.json()["error"]
    assert requests.get(f"{url}/v2/models/digits/labels/stable").status_code == 404
    # V2 has no labels: a label canary leaves its calls on the default version.
    body = {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32",
                        "data": np.ravel(PIXELS).tolist()}]}
    versions = {requests.post(f"{url}/v2/models/digits/infer", json=body).json()["model_version"] for _ in range(20)}
    assert versions == {"2"}
