"""The Open Inference Protocol (V2) over REST, with Triton's model configuration, statistics and
model repository extensions."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g, request

from services import __version__
from services.common import metrics as metrics_endpoint
from services.common.errors import ClientError, Unavailable
from services.common.jsoncodec import json_response
from services.inference import calls, protocol_v2, statistics
from services.inference.batching import Timing
from services.inference.http_requests import Views
from services.runtime import lifecycle


def register(bp: Blueprint, views: Views) -> None:
    store, settings, repo = views.store, views.settings, views.repo

    @bp.get("/v2")
    def v2_server() -> Response:
        return json_response(protocol_v2.server_metadata(__version__))

    @bp.get("/v2/health/live")
    def v2_live() -> Response:
        return json_response({"live": True})

    @bp.get("/v2/health/ready")
    def v2_ready() -> Response:
        ready, _ = calls.readiness(store, settings)
        return json_response({"ready": ready}, 200 if ready else 503)

    @bp.get("/v2/models/<name>")
    @bp.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None) -> Response:
        _, served = views.lookup(name, version)
        versions = sorted(store.model(name).served)
        return json_response(protocol_v2.model_metadata(name, versions, served.servable))

    @bp.get("/v2/models/<name>/ready")
    @bp.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None) -> Response:
        try:
            views.lookup(name, version)
        except Unavailable:
            return json_response({"name": name, "ready": False}, 503)
        return json_response({"name": name, "ready": True})

    scheduling = calls.scheduling(settings)

    @bp.get("/v2/models/<name>/config")
    @bp.get("/v2/models/<name>/versions/<version>/config")
    def v2_config(name: str, version: str | None = None) -> Response:
        _, served = views.lookup(name, version)
        return json_response(calls.config_of(store, name, served, scheduling))

    @bp.get("/v2/models/stats")
    @bp.get("/v2/models/<name>/stats")
    @bp.get("/v2/models/<name>/versions/<version>/stats")
    def v2_stats(name: str | None = None, version: str | None = None) -> Response:
        selected = calls.stats_selection(store, name, version)
        return json_response(statistics.report(metrics_endpoint.samples(statistics.PREFIX), selected))

    # -- Triton's model repository extension ----------------------------------------------------

    @bp.post("/v2/repository/index")
    def v2_repository_index() -> Response:
        ready = views.optional_object().get("ready", False)
        if not isinstance(ready, bool):
            raise ClientError("'ready' must be a boolean")
        return json_response(repo.index(ready_only=ready))

    def control_parameters() -> dict[str, Any]:
        """An admin call's ``parameters``, once the caller may make it."""
        calls.check_control(settings.repository_control, request.remote_addr)
        parameters = views.optional_object().get("parameters", {})
        if not isinstance(parameters, dict):
            raise ClientError("'parameters' must be an object")
        return parameters

    @bp.post("/v2/repository/models/<name>/load")
    def v2_repository_load(name: str) -> Response:
        if "config" in control_parameters():
            raise ClientError("a 'config' parameter is not supported: the model's own signature is its configuration")
        repo.load(name)
        return json_response({})

    @bp.post("/v2/repository/models/<name>/unload")
    def v2_repository_unload(name: str) -> Response:
        control_parameters()
        repo.unload(name)
        return json_response({})

    @bp.post("/v2/models/<name>/infer")
    @bp.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None) -> Response:
        resolved, served = views.lookup(name, version)
        g.call.timing = timing = statistics.RequestTiming()
        decoding = time.perf_counter()
        header, binary = protocol_v2.split_binary(
            views.body(binary_ok=True), request.headers.get(protocol_v2.HEADER_LENGTH)
        )
        infer = protocol_v2.parse_infer(
            views.parse(header), binary, served.servable, allow_nonfinite=settings.allow_nonfinite
        )
        timing.compute_input = time.perf_counter() - decoding
        timing.batcher = batcher_timing = Timing()
        batcher = served.batcher_for(infer.signature)
        results = batcher.submit(infer.arrays, views.timeout(), lifecycle.arrived(), batcher_timing)
        encoding = time.perf_counter()
        payload, header_length = protocol_v2.infer_response(name, resolved, infer, results)
        timing.compute_output = time.perf_counter() - encoding
        if header_length is None:
            return Response(payload, mimetype="application/json")
        response = Response(payload, mimetype="application/octet-stream")
        response.headers[protocol_v2.HEADER_LENGTH] = str(header_length)
        return response
