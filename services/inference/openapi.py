"""The inference service's OpenAPI document, one entry per Flask route.

``test_openapi.py`` compares it with the app's ``url_map`` both ways (every route documented,
every documented path served), so the document cannot drift from the service.
"""

from __future__ import annotations

from typing import Any

from services import __version__
from services.protocol import openapi as oa

TITLE = "modelserver inference"
# Served, but not API: the docs page's static files.
UNDOCUMENTED = frozenset({f"{oa.ASSETS_PREFIX}/{{asset}}"})


def paths() -> dict[str, dict[str, oa.Operation]]:
    return {
        "/": oa.simple_get("Process is alive (KServe V1's liveness check)", "/", oa.STATUS),
        "/healthz": oa.simple_get("Process is alive", "/healthz", oa.STATUS),
        "/readyz": oa.simple_get(
            "Every model loaded and warm (503 otherwise), with model and model-root errors",
            "/readyz", oa.STATUS, (503,)),
        "/metrics": oa.simple_get("Prometheus metrics", "/metrics", None, media_type="text/plain"),
        "/v2": oa.simple_get("Server metadata", "/v2", oa.V2_SERVER_METADATA, tag=oa.V2_TAG),
        "/v2/health/live": oa.simple_get("Server is live", "/v2/health/live", None, tag=oa.V2_TAG),
        "/v2/health/ready": oa.simple_get("Server is ready", "/v2/health/ready", None, (503,), tag=oa.V2_TAG),
        "/v2/models/stats": oa.simple_get("Statistics of every loaded model version", "/v2/models/stats",
                                          oa.V2_STATISTICS, tag=oa.V2_TAG),
        **oa.model_calls(),
        **oa.repository_index(),
        **oa.repository_control(),
        **oa.docs_paths(),
    }


def build_document() -> dict[str, Any]:
    return oa.document(
        TITLE, __version__,
        "Keras models over the TensorFlow Serving REST API and the Open Inference Protocol (V2). "
        'Every error is `{"error": "..."}` with a 4xx or 5xx status.',
        paths(),
    )
