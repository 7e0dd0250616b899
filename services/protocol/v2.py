"""Open Inference Protocol (V2) answers that both services give, and must give alike."""

from __future__ import annotations

from typing import Any

from services.protocol.facts import EXTENSIONS, HEADER_LENGTH  # noqa: F401  (re-exported)


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "modelserver", "version": version, "extensions": list(EXTENSIONS)}
