"""The gateway's OpenAPI document: its own Flask views plus the model paths it forwards.

``test_openapi.py`` compares it both ways with the Flask ``url_map`` and the forwarding table
(:func:`services.gateway.paths.templates`), so the document cannot drift from the gateway.
The model paths are documented once, in :mod:`services.common.openapi`, for both services.
"""

from __future__ import annotations

from typing import Any

from services import __version__
from services.common import openapi as oa
from services.protocol.facts import OPEN_PATHS as OPEN

TITLE = "modelserver gateway"
# Served, but not API: the docs page's static files.
UNDOCUMENTED = frozenset({f"{oa.ASSETS_PREFIX}/{{asset}}"})
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
_LISTING = {
    "type": "object", "required": ["models"],
    "properties": {"models": {"type": "array", "items": {"type": "object"}}},
}


def paths() -> dict[str, dict[str, oa.Operation]]:
    result: dict[str, dict[str, oa.Operation]] = {
        "/healthz": oa.simple_get("Process is alive", "/healthz", oa.STATUS),
        "/readyz": oa.simple_get("Every routed model has a ready replica (503 otherwise)",
                                 "/readyz", oa.STATUS, (503,)),
        "/metrics": oa.simple_get("Prometheus metrics", "/metrics", None, media_type="text/plain"),
        "/v2": oa.simple_get("Server metadata", "/v2", oa.V2_SERVER_METADATA, (401, 429), tag=oa.V2_TAG),
        "/v2/health/live": oa.simple_get("Gateway is live", "/v2/health/live", None, tag=oa.V2_TAG),
        "/v2/health/ready": oa.simple_get("Gateway is ready", "/v2/health/ready", None, (503,), tag=oa.V2_TAG),
        "/v1/models": oa.simple_get("Every routed model, its versions and canary weights", "/v1/models",
                                    _LISTING, (401, 429), tag=oa.TFS_TAG),
        "/v2/repository/index": {"post": oa.operation(
            "Repository index", oa.V2_TAG, "/v2/repository/index", {"type": "array"}, errors=(401, 429))},
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
        for methods in document["paths"].values():
            for op in methods.values():
                op.pop("security", None)
                op["responses"].pop("401", None)
    return document
