"""What the gateway answers itself: health, readiness, metrics and the model listings.

Thin Flask views. Model calls never get here: :mod:`services.gateway.wsgi` forwards them, and
has already checked the caller's key and rate for every path but the health ones.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from services import __version__
from services.common import lifecycle, v2
from services.common import metrics as metrics_endpoint
from services.common.jsoncodec import json_response
from services.gateway import catalog
from services.gateway.proxy import Forwarder
from services.gateway.routing import Router
from services.gateway.wsgi import DEADLINE, REQUEST_ID


def build(router: Router, forwarder: Forwarder) -> Blueprint:
    bp = Blueprint("gateway", __name__)

    def readiness() -> tuple[bool, str, dict[str, dict[str, int]]]:
        ready, models = router.readiness()
        if lifecycle.is_draining():
            return False, "draining", models
        if not models:
            return False, "no models routed", models
        return ready, "ready" if ready else "a model has no ready replica", models

    @bp.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @bp.get("/readyz")
    def readyz() -> Response:
        ready, status, models = readiness()
        return json_response({"status": status, "models": models}, 200 if ready else 503)

    @bp.get("/metrics")
    def prometheus() -> Response:
        return metrics_endpoint.metrics_response()

    @bp.get("/v2/health/live")
    def v2_live() -> Response:
        return json_response({"live": True})

    @bp.get("/v2/health/ready")
    def v2_ready() -> Response:
        ready, _, _ = readiness()
        return json_response({"ready": ready}, 200 if ready else 503)

    @bp.get("/v2")
    def v2_server() -> Response:
        return json_response(v2.server_metadata(__version__))

    def models_listing() -> dict[str, list[dict[str, object]]]:
        routes = [router.routes[name] for name in sorted(router.routes)]
        return catalog.listing(routes, forwarder, request.environ[DEADLINE], request.environ[REQUEST_ID])

    @bp.get("/v1/models")
    def tfs_models() -> Response:
        return json_response(models_listing())

    @bp.post("/v2/repository/index")
    def v2_index() -> Response:
        return json_response(catalog.repository_index(models_listing()["models"]))

    return bp
