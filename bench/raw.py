"""The raw model limit: the compiled model call alone, in one process, at several batch sizes.

Nothing but the model: a ``tf.function`` traced once, called on a ready numpy batch, result
copied back to numpy (as every server must). TensorFlow uses all CPUs of this one process. The
best samples/s over the batch sizes is the ceiling any server of this model can approach on
this machine; the batch-1 call time is the floor of a lone request's latency.

    python -m bench.raw <model.keras> [--batches 1,32,128] [--seconds 1.0]   # prints JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCHES = (1, 8, 32, 64, 128, 256)


def measure(model_path: Path, batches: tuple[int, ...], seconds: float, rounds: int = 3) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.saving.load_model(model_path, compile=False)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec]).get_concrete_function()
    rng = np.random.default_rng(0)
    inputs = {batch: rng.random((batch, *spec.shape[1:]), dtype=np.float32) for batch in batches}
    for x in inputs.values():
        for _ in range(3):  # warm up every shape
            call(x).numpy()
    samples: dict[int, list[float]] = {batch: [] for batch in batches}
    single: list[float] = []
    for _ in range(rounds):
        for batch, x in inputs.items():
            times: list[float] = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or len(times) < 2:
                started = time.perf_counter()
                call(x).numpy()
                times.append(time.perf_counter() - started)
            samples[batch].append(batch * len(times) / sum(times))
            if batch == 1:
                single += times
    rates = {batch: statistics.median(r) for batch, r in samples.items()}
    best = max(rates, key=rates.__getitem__)
    return {
        "samples_per_second": {str(b): round(r, 1) for b, r in rates.items()},
        "best_batch": best,
        "best_samples_per_second": round(rates[best], 1),
        "single_call_ms": round(1000 * statistics.median(single), 3) if single else None,
        "threads": len(os.sched_getaffinity(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure a model's raw compiled-call throughput.")
    parser.add_argument("model", type=Path)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--seconds", type=float, default=0.5, help="per batch size and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    print(json.dumps(measure(args.model, batches, args.seconds, args.rounds)))


if __name__ == "__main__":
    main()
