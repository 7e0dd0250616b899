"""TensorFlow Serving's REST API: status, metadata and predict views."""

from __future__ import annotations

import time

from flask import Blueprint, Response, g

from services.common.errors import NotFound
from services.common.jsoncodec import json_response
from services.inference import protocol_tfs, statistics
from services.inference.batching import Timing
from services.inference.http_requests import Views
from services.runtime import lifecycle


def register(bp: Blueprint, views: Views) -> None:
    store, settings = views.store, views.settings

    @bp.get("/v1/models/<name>")
    @bp.get("/v1/models/<name>/versions/<version>")
    @bp.get("/v1/models/<name>/labels/<label>")
    def tfs_status(name: str, version: str | None = None, label: str | None = None) -> Response:
        model = store.model(name)
        statuses = sorted(model.statuses.values(), key=lambda s: s.version, reverse=True)
        served = model.served
        ready = bool(served)
        if label is not None:
            version = str(store.labelled(name, label))
        if version is not None:
            statuses = [s for s in statuses if str(s.version) == version]
            if not statuses:
                raise NotFound(f"model '{name}' version '{version[:40]}' not found")
            ready = statuses[0].version in served
        # name and ready: KServe's V1 model-ready check, beside TF Serving's own shape.
        return json_response({"name": name, "ready": ready, **protocol_tfs.status_response(statuses)})

    @bp.get("/v1/models/<name>/metadata")
    @bp.get("/v1/models/<name>/versions/<version>/metadata")
    @bp.get("/v1/models/<name>/labels/<label>/metadata")
    def tfs_metadata(name: str, version: str | None = None, label: str | None = None) -> Response:
        resolved, served = views.lookup(name, version, label)
        return json_response(protocol_tfs.metadata_response(name, resolved, served.servable))

    @bp.post("/v1/models/<name>:predict")
    @bp.post("/v1/models/<name>/versions/<version>:predict")
    @bp.post("/v1/models/<name>/labels/<label>:predict")
    def tfs_predict(name: str, version: str | None = None, label: str | None = None) -> Response:
        _, served = views.lookup(name, version, label)
        g.call.timing = timing = statistics.RequestTiming()
        decoding = time.perf_counter()
        payload = views.parse(views.body())
        pinned = protocol_tfs.model_spec(payload, name, version, label)
        if pinned is not None:  # the body's model_spec names the version or label instead
            _, served = views.lookup(name, *pinned)
        predict = protocol_tfs.parse_predict(payload, served.servable, allow_nonfinite=settings.allow_nonfinite)
        timing.compute_input = time.perf_counter() - decoding
        timing.batcher = batcher_timing = Timing()
        batcher = served.batcher_for(predict.signature)
        results = batcher.submit(predict.arrays, views.timeout(), lifecycle.arrived(), batcher_timing)
        encoding = time.perf_counter()
        response = json_response(protocol_tfs.predict_response(results, predict.signature, predict.row_format))
        timing.compute_output = time.perf_counter() - encoding
        return response
