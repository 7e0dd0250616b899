"""What the gateway routes, as clients ask for it: ``GET /v1/models`` and V2's repository index.

The versions come from the replicas themselves (``GET /v1/models/<name>`` on one of each
model's replicas), so the listing shows what is loaded, not what the routes file hopes for.
"""

from __future__ import annotations

from typing import Any

from services.common import jsoncodec, requestid
from services.common.errors import ServingError
from services.gateway.proxy import Deadline, Forwarder
from services.gateway.routing import Route
from services.protocol.facts import AVAILABLE


def model_entry(route: Route, forwarder: Forwarder, due: Deadline, request_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": route.name}
    if route.canary:
        entry["canary"] = route.canary.weights
        if route.canary.by == "label":
            entry["canary_by"] = "label"  # the weights' keys are version labels
    try:
        reply = forwarder.forward(
            route, "GET", f"/v1/models/{route.name}", None, {requestid.HEADER: request_id}, due
        ).reply
        body = jsoncodec.loads(reply.body)
    except ServingError as error:
        return {**entry, "model_version_status": [], "error": error.message}
    except jsoncodec.JSONDecodeError:
        return {**entry, "model_version_status": [], "error": "a replica answered with malformed JSON"}
    if reply.status != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        return {**entry, "model_version_status": [], "error": str(error or f"status {reply.status}")}
    return {**entry, "model_version_status": body.get("model_version_status", [])}


def listing(routes: list[Route], forwarder: Forwarder, due: Deadline, request_id: str) -> dict[str, Any]:
    """``GET /v1/models``: every routed model, its versions' status and canary weights."""
    return {"models": [model_entry(r, forwarder, due, request_id) for r in routes]}


def repository_index(models: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The same facts as V2's ``POST /v2/repository/index`` answers them."""
    index = []
    for model in models:
        statuses = model["model_version_status"]
        if not statuses:
            index.append({"name": model["name"], "state": "UNAVAILABLE", "reason": model.get("error", "")})
        for status in statuses:
            available = status.get("state") == AVAILABLE
            index.append({
                "name": model["name"], "version": str(status.get("version", "")),
                "state": "READY" if available else "UNAVAILABLE",
                "reason": "" if available else str(status.get("status", {}).get("error_message", "")),
            })
    return index
