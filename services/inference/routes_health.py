"""Health, readiness and metrics over HTTP (probes and scrapers: never refused for load)."""

from __future__ import annotations

from flask import Blueprint, Response

from services.common import metrics as metrics_endpoint
from services.common.jsoncodec import json_response
from services.inference import calls
from services.inference.http_requests import Views


def register(bp: Blueprint, views: Views, grpc_port: int | None) -> None:
    store = views.store

    @bp.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @bp.get("/")
    def root_liveness() -> Response:
        # KServe's V1 protocol: its client's liveness check (and KServe's model server's answer).
        return json_response({"status": "alive"})

    @bp.get("/readyz")
    def readyz() -> Response:
        ready, reason = calls.readiness(store, views.settings)
        unloaded = store.unloaded()  # not served here on purpose: the gateway must not send them
        models = {n: store.model(n).default_version for n in store.names() if n not in unloaded}
        # Errors do not make it unready while every model still serves: they say what to fix.
        body = {"status": reason, "models": models, "errors": store.errors()}
        if grpc_port is not None:  # where the gateway finds this replica's gRPC server
            body["grpc_port"] = grpc_port
        return json_response(body, 200 if ready else 503)

    @bp.get("/metrics")
    def prometheus() -> Response:
        return metrics_endpoint.metrics_response()
