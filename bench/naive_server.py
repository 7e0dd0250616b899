"""Benchmark baseline (2): the classic tutorial server. Not part of the product.

Flask calling ``model.predict`` once per request, with Flask's own JSON, under Gunicorn sync
workers; nothing tuned. ``model.predict`` sets up a data pipeline on every call, which is why
this design manages only tens of requests per second. Run by the harness as::

    BENCH_MODEL_ROOT=<root> gunicorn -w 2 -k sync bench.naive_server:app
"""

import os
from pathlib import Path

import keras
import numpy as np
from flask import Flask, jsonify, request

ROOT = Path(os.environ["BENCH_MODEL_ROOT"])
models = {d.name: keras.saving.load_model(d / "1" / "model.keras") for d in ROOT.iterdir() if d.is_dir()}
app = Flask(__name__)


@app.post("/v1/models/<name>:predict")
def predict(name: str):  # noqa: ANN201
    instances = np.array(request.get_json()["instances"], dtype=np.float32)
    return jsonify({"predictions": models[name].predict(instances, verbose=0).tolist()})
