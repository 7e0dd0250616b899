"""Open Inference Protocol (V2) facts that both services state, and must state alike."""

from __future__ import annotations

from typing import Any

HEADER_LENGTH = "Inference-Header-Content-Length"  # binary tensor extension: JSON header size
EXTENSIONS = ["binary_tensor_data"]


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "modelserver", "version": version, "extensions": EXTENSIONS}
