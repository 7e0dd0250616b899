"""Keeping a service's OpenAPI document true to its real routes (the services' openapi tests)."""

from __future__ import annotations

from typing import Any

from services.protocol.openapi import flask_template


def flask_routes(app: Any) -> set[tuple[str, str]]:
    """(OpenAPI template, method) for every rule of a Flask app (HEAD/OPTIONS are implicit)."""
    return {
        (flask_template(rule.rule), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods or () if method not in ("HEAD", "OPTIONS")
    }


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(template, method) for template, methods in doc["paths"].items() for method in methods}
