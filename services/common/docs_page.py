"""``/openapi.json`` and ``/docs``: a service's OpenAPI document and a Swagger UI page for it.

The page's assets come from the ``swagger-ui-bundle`` package: no CDN, nothing fetched at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, send_from_directory

from services.common.errors import NotFound
from services.common.jsoncodec import json_response
from services.protocol.openapi import ASSETS_PREFIX

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js"></script>
</body></html>
"""
# A script file, not inline: the page works under a strict Content-Security-Policy.
_DOCS_INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});\n'
_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def docs_blueprint(build_document: Callable[[], dict[str, Any]], title: str) -> Blueprint:
    """``/openapi.json``, ``/docs`` and the page's two assets, built once on first use."""
    import swagger_ui_bundle

    bp = Blueprint("openapi", __name__)
    cached: list[dict[str, Any]] = []

    @bp.get("/openapi.json")
    def openapi_json() -> Response:
        if not cached:
            cached.append(build_document())
        return json_response(cached[0])

    @bp.get("/docs")
    def docs() -> Response:
        page = _DOCS_PAGE.format(title=title, assets=ASSETS_PREFIX)
        return Response(page, mimetype="text/html", headers=_PAGE_HEADERS)

    @bp.get(f"{ASSETS_PREFIX}/<asset>")
    def asset(asset: str) -> Response:
        if asset == "docs-init.js":
            return Response(_DOCS_INIT, mimetype="text/javascript", headers=_PAGE_HEADERS)
        if asset not in _ASSETS:  # a fixed list: no path from the client reaches the filesystem
            raise NotFound("no such asset")
        response = send_from_directory(swagger_ui_bundle.swagger_ui_path, asset, max_age=3600)
        response.headers.update(_PAGE_HEADERS)
        return response

    return bp
