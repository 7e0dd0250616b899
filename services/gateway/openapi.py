"""The gateway's OpenAPI document: its own Flask views plus the model paths it forwards.

``test_openapi.py`` compares it both ways with the Flask ``url_map`` and the forwarding table
(:func:`services.gateway.paths.templates`), so the document cannot drift from the gateway.
The model paths are documented once, in :mod:`services.protocol.openapi`, for both services.
"""

from __future__ import annotations

from typing import Any

from services import __version__
from services.gateway.paths import REPOSITORY_TEMPLATES
from services.protocol import openapi as oa
from services.protocol.facts import OPEN_PATHS as OPEN

TITLE = "modelserver gateway"
# Served, but not API: the docs page's static files and the status page's script.
UNDOCUMENTED = frozenset({f"{oa.ASSETS_PREFIX}/{{asset}}", "/status.js"})
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
_STATUS_SNAPSHOT = {
    "type": "object", "required": ["time", "models"],
    "properties": {
        "time": {"type": "number", "description": "Unix time of the snapshot."},
        "models": {"type": "array", "items": {
            "type": "object", "required": ["name", "canary", "replicas", "requests", "latency_buckets"],
            "properties": {
                "name": {"type": "string"},
                "canary": {"type": "object", "nullable": True,
                           "description": "Version (or version label) -> weight; null: no canary."},
                "replicas": {"type": "array", "items": {"type": "object"}},
                "requests": {"type": "object", "description": "Requests so far by status (all workers)."},
                "latency_buckets": {"type": "array", "description": "[le, cumulative count] of the "
                                    "upstream latency histogram (all workers)."},
            },
        }},
    },
}
_LISTING = {
    "type": "object", "required": ["models"],
    "properties": {"models": {"type": "array", "items": {"type": "object"}}},
}


def paths() -> dict[str, dict[str, oa.Operation]]:
    result: dict[str, dict[str, oa.Operation]] = {
        "/": oa.simple_get("Process is alive (KServe V1's liveness check)", "/", oa.STATUS),
        "/healthz": oa.simple_get("Process is alive", "/healthz", oa.STATUS),
        "/readyz": oa.simple_get("Every routed model has a ready replica (503 otherwise)",
                                 "/readyz", oa.STATUS, (503,)),
        "/metrics": oa.simple_get("Prometheus metrics", "/metrics", None, media_type="text/plain"),
        "/v2": oa.simple_get("Server metadata", "/v2", oa.V2_SERVER_METADATA, (401, 429), tag=oa.V2_TAG),
        "/v2/health/live": oa.simple_get("Gateway is live", "/v2/health/live", None, tag=oa.V2_TAG),
        "/v2/health/ready": oa.simple_get("Gateway is ready", "/v2/health/ready", None, (503,), tag=oa.V2_TAG),
        "/v1/models": oa.simple_get("Every routed model, its versions and canary weights", "/v1/models",
                                    _LISTING, (401, 429), tag=oa.TFS_TAG),
        "/v2/models/stats": oa.simple_get(
            "Statistics of every routed model, each summed over its replicas", "/v2/models/stats",
            oa.V2_STATISTICS, (401, 429), tag=oa.V2_TAG),
        "/v2/repository/index": {"post": oa.operation(
            "Repository index", oa.V2_TAG, "/v2/repository/index", {"type": "array"}, errors=(401, 429))},
        "/status": oa.simple_get("Live status page (GATEWAY_STATUS_PAGE; 404 when off)", "/status",
                                 None, (404,), media_type="text/html"),
        "/status.json": oa.simple_get("The status page's data: routes, replicas, counters",
                                      "/status.json", _STATUS_SNAPSHOT, (404,)),
        # Admin calls: an admin key (GATEWAY_ADMIN_KEYS), never a client key; 403 without one set.
        **oa.repository_control(extra_errors=(401, 429, 502, 504)),
        **oa.model_calls(extra_errors=(401, 429, 502)),
        **oa.docs_paths(),
    }
    for template, methods in result.items():
        for op in methods.values():
            if template in OPEN:
                op["security"] = []
    return result


def build_document(auth_enabled: bool) -> dict[str, Any]:
    """With keys configured every path but the open ones needs one; without, none does."""
    document = oa.document(
        TITLE, __version__,
        "The front door: API keys (when configured), a per-key rate limit, routing to "
        "inference replicas, canaries, deadlines and one retry. Model paths are the "
        'inference service\'s own. Every error is `{"error": "..."}`.',
        paths(), security=SECURITY_SCHEMES if auth_enabled else None,
    )
    if auth_enabled:
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    else:
        for template, methods in document["paths"].items():
            for op in methods.values():
                op.pop("security", None)
                if template not in REPOSITORY_TEMPLATES:  # admin keys are their own
                    op["responses"].pop("401", None)
    return document
