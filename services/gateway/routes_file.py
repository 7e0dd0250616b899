"""The routes file: which inference backends serve each model, and the canary weights.

::

    models:
      digits:
        backends: ["127.0.0.1:8501", "inference-digits:8080"]  # host:port; a name may resolve to many
        versions: {"1": 90, "2": 10}                            # optional weighted canary
      other:
        backends: ["inference-other:8080"]
        labels: {"stable": 90, "canary": 10}                    # or one between version labels

Parsing is pure and strict (unknown keys are typos, not options), so a bad edit is refused with a
message naming the place, and the routes in force stay in force.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from services.common import naturals
from services.protocol.facts import MODEL_NAME, VERSION_LABEL

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")
_MODEL_KEYS = {"backends", "versions", "labels"}


class RoutesFileError(ValueError):
    """The routes file cannot be used; the message says where and why."""


@dataclass(frozen=True, order=True)
class Target:
    """One ``host:port`` entry; a host name stands for every address it resolves to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ModelRoute:
    name: str
    targets: tuple[Target, ...]
    versions: tuple[tuple[str, int], ...] = ()  # (version, weight); empty: no canary
    labels: tuple[tuple[str, int], ...] = ()  # (version label, weight): a canary between labels


@dataclass(frozen=True)
class Routes:
    models: Mapping[str, ModelRoute] = field(default_factory=dict)


def parse(text: str, source: str = "routes") -> Routes:
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:  # "2001-13-45" is a bad date
        raise RoutesFileError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(document, dict) or set(document) != {"models"}:
        raise RoutesFileError(f"{source}: expected a mapping with the single key 'models'")
    models = document["models"] or {}
    if not isinstance(models, dict):
        raise RoutesFileError(f"{source}: 'models' must map model names to their routes")
    routes = {}
    for name, entry in models.items():
        where = f"{source}: models.{name}"
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise RoutesFileError(f"{where}: model names are letters, digits, '.', '_', '-'")
        routes[name] = _model(name, entry, where)
    return Routes(routes)


def _model(name: str, entry: Any, where: str) -> ModelRoute:
    if not isinstance(entry, dict):
        raise RoutesFileError(f"{where}: expected a mapping with 'backends' (and 'versions')")
    unknown = set(entry) - _MODEL_KEYS
    if unknown:
        raise RoutesFileError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    backends = entry.get("backends")
    if isinstance(backends, str):
        backends = [backends]
    if not isinstance(backends, list) or not backends:
        raise RoutesFileError(f"{where}.backends: expected a non-empty list of host:port")
    targets = tuple(dict.fromkeys(parse_target(b, f"{where}.backends") for b in backends))
    if "versions" in entry and "labels" in entry:
        raise RoutesFileError(f"{where}: a canary splits by 'versions' or by 'labels', not both")
    return ModelRoute(
        name, targets, _versions(entry.get("versions"), f"{where}.versions"),
        _labels(entry.get("labels"), f"{where}.labels"),
    )


def parse_target(value: Any, where: str) -> Target:
    if not isinstance(value, str):
        raise RoutesFileError(f"{where}: {value!r} is not a host:port string")
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ip(host)
    else:
        valid_host = bool(_HOST.fullmatch(host))
    number = naturals.parse(port)
    if not sep or not valid_host or number is None or not 0 < number < 65536:
        raise RoutesFileError(f"{where}: {value!r} is not host:port (IPv6 as [addr]:port)")
    return Target(host, number)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _versions(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    def version(key: Any) -> str:
        number = None if isinstance(key, bool) else naturals.parse(str(key))
        if number is None:
            raise RoutesFileError(f"{where}: version {key!r} is not an integer")
        return str(number)

    weights = _weights(value, where, "version", version)
    return tuple(sorted(weights, key=lambda vw: int(vw[0])))


def _labels(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    def label(key: Any) -> str:
        if not isinstance(key, str) or not VERSION_LABEL.fullmatch(key):
            raise RoutesFileError(f"{where}: label {key!r}: labels are letters, digits, '.', '_', '-'")
        return key

    return tuple(sorted(_weights(value, where, "label", label)))


def _weights(value: Any, where: str, what: str, key: Any) -> list[tuple[str, int]]:
    """A canary's ``{version or label: weight}``, each key checked by ``key``."""
    if value is None:
        return []
    if not isinstance(value, dict) or not value:
        raise RoutesFileError(f"{where}: expected a mapping of {what} to weight")
    weights = []
    for raw, weight in value.items():
        name = key(raw)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise RoutesFileError(f"{where}.{raw}: weight {weight!r} is not a whole number >= 0")
        weights.append((name, weight))
    if len({v for v, _ in weights}) < len(weights):
        raise RoutesFileError(f"{where}: a {what} is listed twice")
    if not any(w for _, w in weights):
        raise RoutesFileError(f"{where}: at least one weight must be above 0")
    return weights
