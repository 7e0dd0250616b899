"""Benchmark baseline: the tutorial server done right, minus batching. Not part of the product.

Flask + a compiled ``tf.function`` (traced once) + orjson, TensorFlow's threads sized to the
worker count, under Gunicorn sync workers: the best a single-request-per-call design does, and
the bar the inference service must clear to show batching and its features cost nothing.

    BENCH_MODEL_ROOT=<root> BENCH_WORKERS=2 gunicorn -w 2 -k sync bench.tuned_server:app
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import tensorflow as tf  # noqa: E402
from flask import Flask, Response, request  # noqa: E402

_threads = max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("BENCH_WORKERS", "2")))
tf.config.threading.set_intra_op_parallelism_threads(_threads)
tf.config.threading.set_inter_op_parallelism_threads(1)


def _compile(directory: Path):  # noqa: ANN202
    model = keras.saving.load_model(directory / "1" / "model.keras", compile=False)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec]).get_concrete_function()
    call(tf.zeros((1, *spec.shape[1:])))  # warm up
    return call


ROOT = Path(os.environ["BENCH_MODEL_ROOT"])
calls = {d.name: _compile(d) for d in ROOT.iterdir() if d.is_dir()}
app = Flask(__name__)


@app.post("/v1/models/<name>:predict")
def predict(name: str) -> Response:
    instances = np.asarray(orjson.loads(request.get_data())["instances"], dtype=np.float32)
    outputs = calls[name](instances).numpy()
    return Response(orjson.dumps({"predictions": outputs}, option=orjson.OPT_SERIALIZE_NUMPY),
                    mimetype="application/json")
