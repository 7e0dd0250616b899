"""What the gateway answers itself: health, readiness, metrics, the model listings and the
status page.

Thin Flask views. Model calls never get here: :mod:`services.gateway.pipeline` forwards them, and
has already checked the caller's key and rate for every path but the health ones.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, request

from services import __version__
from services.common import jsoncodec, requestid
from services.common import metrics as metrics_endpoint
from services.common.errors import NotFound, ServingError
from services.common.jsoncodec import json_response
from services.gateway import catalog, fanout, status
from services.gateway.pipeline import DEADLINE, REQUEST_ID
from services.gateway.proxy import Forwarder
from services.gateway.routing import Router
from services.protocol import v2
from services.runtime import lifecycle

# The page's script is a file of its own, not inline: it runs under a strict policy.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def gateway_readiness(router: Router) -> tuple[bool, str, dict[str, dict[str, int]]]:
    """(ready, why, per-model replica counts): ``/readyz``, V2's ready and gRPC's health alike."""
    ready, models = router.readiness()
    if lifecycle.is_draining():
        return False, "draining", models
    if not models:
        return False, "no models routed", models
    return ready, "ready" if ready else "a model has no ready replica", models


def build(router: Router, forwarder: Forwarder, *, status_page: bool = False) -> Blueprint:
    bp = Blueprint("gateway", __name__)

    def readiness() -> tuple[bool, str, dict[str, dict[str, int]]]:
        return gateway_readiness(router)

    @bp.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @bp.get("/")
    def root_liveness() -> Response:
        return json_response({"status": "alive"})  # KServe V1's liveness check

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

    @bp.get("/v2/models/stats")
    def v2_all_stats() -> Response:
        """Every routed model's statistics, each summed over the replicas that serve it."""
        model_stats: list[object] = []
        for name in sorted(router.routes):
            route = router.routes[name]
            answers = fanout.each_replica(
                forwarder, route, "GET", f"/v2/models/{name}/stats", None,
                {requestid.HEADER: request.environ[REQUEST_ID]}, request.environ[DEADLINE],
            )
            try:
                reply = fanout.summed_statistics(route, answers)
            except ServingError:
                continue  # no replica of this model answers: it has no statistics to show
            if reply.status == 200:
                model_stats.extend(jsoncodec.loads(reply.body)["model_stats"])
        return json_response({"model_stats": model_stats})

    @bp.post("/v2/repository/index")
    def v2_index() -> Response:
        return json_response(catalog.repository_index(models_listing()["models"]))

    def require_status_page() -> None:
        if not status_page:
            raise NotFound("the status page is off (GATEWAY_STATUS_PAGE)")

    def page_file(name: str, mimetype: str) -> Response:
        require_status_page()
        body = (status.PAGE_DIR / name).read_bytes()
        return Response(body, mimetype=mimetype, headers=_PAGE_HEADERS)

    @bp.get("/status")
    def status_html() -> Response:
        return page_file("status.html", "text/html")

    @bp.get("/status.js")
    def status_js() -> Response:
        return page_file("status.js", "text/javascript")

    @bp.get("/status.json")
    def status_json() -> Response:
        require_status_page()
        families = metrics_endpoint.registry().collect()
        return json_response(status.snapshot(router.routes, families, time.time()),
                             headers={"Cache-Control": "no-store"})

    return bp
