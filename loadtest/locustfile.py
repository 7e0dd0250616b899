"""Locust users for `make load-test`: real digits images over both protocols, plus bad input.

The mix mirrors what a model server meets: mostly single-image TF Serving requests, some
V2 requests, some small batches, and a trickle of malformed requests that must come back as
fast 400s. Run headless by `make load-test`; the report lands in reports/.
"""

from __future__ import annotations

import json
import random

from locust import FastHttpUser, between, task
from sklearn.datasets import load_digits

_IMAGES = (load_digits().images / 16.0).round(3)


def _instances(count: int) -> list:
    rows = random.sample(range(len(_IMAGES)), count)
    return [[[[float(v)] for v in row] for row in _IMAGES[i]] for i in rows]


class ModelClient(FastHttpUser):
    wait_time = between(0, 0.01)

    @task(10)
    def tfs_predict_one(self) -> None:
        self.client.post("/v1/models/digits:predict", json={"instances": _instances(1)}, name="tfs :predict x1")

    @task(3)
    def v2_infer_one(self) -> None:
        pixels = [v[0] for row in _instances(1)[0] for v in row]
        payload = {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": pixels}]}
        self.client.post("/v2/models/digits/infer", json=payload, name="v2 infer x1")

    @task(2)
    def tfs_predict_batch(self) -> None:
        self.client.post("/v1/models/digits:predict", json={"instances": _instances(16)}, name="tfs :predict x16")

    @task(1)
    def malformed(self) -> None:
        with self.client.post(
            "/v1/models/digits:predict", data=json.dumps({"instances": [[1, 2]]}),
            headers={"Content-Type": "application/json"}, name="bad shape (expects 400)",
            catch_response=True,
        ) as response:
            if response.status_code == 400 and "error" in response.json():
                response.success()
            else:
                response.failure(f"expected a 400 JSON error, got {response.status_code}")
