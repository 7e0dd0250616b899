"""What one benchmark request is: a single sample, in TF Serving's JSON or V2's binary form.

TF Serving's row format is what every target speaks, so it is the comparison; the Open Inference
Protocol with the binary tensor extension is the service's fast path for large tensors (a
32x32x3 image costs ~0.4 ms to parse as JSON, microseconds as bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.models import BenchModel

TFS, V2_BINARY = "tfs", "v2-binary"


@dataclass(frozen=True)
class Request:
    path: str  # e.g. /v1/models/digits:predict
    body: Path
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def write(models: list[BenchModel], directory: Path) -> dict[str, dict[str, Request]]:
    """One request per protocol and model (a fixed-seed sample); protocol -> model -> request."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, Request]] = {TFS: {}, V2_BINARY: {}}
    for model in models:
        sample = np.round(rng.random((1, *model.input_shape)), 3).astype(np.float32)
        tfs = directory / f"{model.name}.json"
        tfs.write_text(json.dumps({"instances": sample.tolist()}))
        out[TFS][model.name] = Request(f"/v1/models/{model.name}:predict", tfs, "application/json")
        raw = sample.tobytes()
        header = json.dumps({"inputs": [{
            "name": model.input_name, "shape": list(sample.shape), "datatype": "FP32",
            "parameters": {"binary_data_size": len(raw)}}]}).encode()
        v2 = directory / f"{model.name}.v2bin"
        v2.write_bytes(header + raw)
        out[V2_BINARY][model.name] = Request(
            f"/v2/models/{model.name}/infer", v2, "application/octet-stream",
            (("Inference-Header-Content-Length", str(len(header))),))
    return out
