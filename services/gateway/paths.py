"""The model paths the gateway forwards (the inference service's own), matched without Flask.

TensorFlow Serving REST: ``/v1/models/<name>[/versions/<v>]``, ``.../metadata`` (GET) and
``...:predict`` (POST). Open Inference Protocol: ``/v2/models/<name>[/versions/<v>]``,
``.../ready`` (GET) and ``.../infer`` (POST). Predict and infer are the calls a canary splits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.protocol.facts import MODEL_NAME_PATTERN

# Model names as the routes file allows them; any version text, so a bad one gets a clear 404.
_PATTERN = re.compile(
    rf"/(?P<protocol>v1|v2)/models/(?P<name>{MODEL_NAME_PATTERN})"
    r"(?:/versions/(?P<version>[^/:]+))?(?P<suffix>|/metadata|:predict|/ready|/infer)"
)
_METHODS = {
    ("v1", ""): "GET", ("v1", "/metadata"): "GET", ("v1", ":predict"): "POST",
    ("v2", ""): "GET", ("v2", "/ready"): "GET", ("v2", "/infer"): "POST",
}
_INFERENCE = {":predict", "/infer"}


@dataclass(frozen=True, slots=True)
class ModelCall:
    protocol: str  # "v1" (TF Serving) or "v2" (Open Inference Protocol)
    name: str
    version: str | None  # pinned by the client, else None
    suffix: str
    method: str  # the one method this path takes

    @property
    def is_inference(self) -> bool:
        return self.suffix in _INFERENCE

    def target(self, version: str | None) -> str:
        """The path to send upstream, for ``version`` (None: the replica's default)."""
        pinned = f"/versions/{version}" if version else ""
        return f"/{self.protocol}/models/{self.name}{pinned}{self.suffix}"


def match(path: str) -> ModelCall | None:
    found = _PATTERN.fullmatch(path)
    if found is None:
        return None
    protocol, name, version, suffix = found.group("protocol", "name", "version", "suffix")
    method = _METHODS.get((protocol, suffix))
    if method is None:  # e.g. /v1/models/x/ready: not a path of this protocol
        return None
    return ModelCall(protocol, name, version, suffix, method)


def templates() -> list[tuple[str, str]]:
    """Every path this table matches, as an OpenAPI template, with its method (for the docs)."""
    return [
        (f"/{protocol}/models/{{name}}{pinned}{suffix}", method)
        for (protocol, suffix), method in _METHODS.items()
        for pinned in ("", "/versions/{version}")
    ]
