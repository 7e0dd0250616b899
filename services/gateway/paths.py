"""The model paths the gateway forwards (the inference service's own), matched without Flask.

TensorFlow Serving REST: ``/v1/models/<name>[/versions/<v>|/labels/<label>]``, ``.../metadata``
(GET) and ``...:predict`` (POST). Open Inference Protocol: ``/v2/models/<name>[/versions/<v>]``,
``.../ready``, ``.../config``, ``.../stats`` (GET) and ``.../infer`` (POST). Predict and infer
are the calls a canary splits; statistics are asked of every replica and summed. Triton's
repository control, ``/v2/repository/models/<name>/load|unload``, is matched apart: it is an
admin call, for every replica of the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.protocol.facts import MODEL_NAME_PATTERN

# Model names as the routes file allows them; any version or label text, so a bad one gets a
# clear 404.
_PATTERN = re.compile(
    rf"/(?P<protocol>v1|v2)/models/(?P<name>{MODEL_NAME_PATTERN})"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>|/metadata|:predict|/ready|/infer|/config|/stats)"
)
_REPOSITORY = re.compile(rf"/v2/repository/models/(?P<name>{MODEL_NAME_PATTERN})/(?P<action>load|unload)")
_METHODS = {
    ("v1", ""): "GET", ("v1", "/metadata"): "GET", ("v1", ":predict"): "POST",
    ("v2", ""): "GET", ("v2", "/ready"): "GET", ("v2", "/infer"): "POST",
    ("v2", "/config"): "GET", ("v2", "/stats"): "GET",
}
_INFERENCE = {":predict", "/infer"}
STATS = "/stats"
ALL_STATS = "/v2/models/stats"
REPOSITORY_TEMPLATES = ("/v2/repository/models/{name}/load", "/v2/repository/models/{name}/unload")


@dataclass(frozen=True, slots=True)
class ModelCall:
    protocol: str  # "v1" (TF Serving) or "v2" (Open Inference Protocol)
    name: str
    version: str | None  # pinned by the client, else None
    suffix: str
    method: str  # the one method this path takes
    label: str | None = None  # a version label the client named (TF Serving REST only)

    @property
    def is_inference(self) -> bool:
        return self.suffix in _INFERENCE

    @property
    def is_statistics(self) -> bool:
        return self.suffix == STATS

    def target(self, version: str | None, label: str | None = None) -> str:
        """The path to send upstream, for ``version`` or ``label`` (neither: the replica's default)."""
        pinned = f"/versions/{version}" if version else f"/labels/{label}" if label else ""
        return f"/{self.protocol}/models/{self.name}{pinned}{self.suffix}"


def match(path: str) -> ModelCall | None:
    found = _PATTERN.fullmatch(path)
    if found is None:
        return None
    protocol, name, version, label, suffix = found.group("protocol", "name", "version", "label", "suffix")
    if path == ALL_STATS:  # Triton's path, not a model called "stats" (as in Triton)
        return None
    method = _METHODS.get((protocol, suffix))
    if method is None or (label is not None and protocol != "v1"):  # e.g. /v1/models/x/ready;
        return None  # labels are TF Serving's, V2 has none
    return ModelCall(protocol, name, version, suffix, method, label)


@dataclass(frozen=True, slots=True)
class RepositoryCall:
    name: str
    action: str  # "load" or "unload"

    @property
    def target(self) -> str:
        return f"/v2/repository/models/{self.name}/{self.action}"


def match_repository(path: str) -> RepositoryCall | None:
    found = _REPOSITORY.fullmatch(path)
    return None if found is None else RepositoryCall(found.group("name"), found.group("action"))


def templates() -> list[tuple[str, str]]:
    """Every path this table matches, as an OpenAPI template, with its method (for the docs)."""
    return [
        (f"/{protocol}/models/{{name}}{pinned}{suffix}", method)
        for (protocol, suffix), method in _METHODS.items()
        for pinned in ("", "/versions/{version}", *(("/labels/{label}",) if protocol == "v1" else ()))
    ] + [(template, "POST") for template in REPOSITORY_TEMPLATES]
