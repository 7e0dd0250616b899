"""The routes in force: model name -> replicas and canary, swapped whole on reload.

The hot path reads ``router.routes`` once and gets an immutable snapshot, so a reload in another
thread never shows a request half of one generation and half of the next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.watched_file import WatchedFile
from services.gateway import routes_file
from services.gateway.balancer import Balancer
from services.gateway.canary import Canary
from services.gateway.discovery import Resolver, resolve
from services.gateway.routes_file import ModelRoute, Routes, Target
from services.gateway.upstream import Backend, BackendRegistry

log = logging.getLogger(__name__)

Addresses = Mapping[Target, list[tuple[str, int]]]


@dataclass(frozen=True)
class Route:
    name: str
    targets: tuple[Target, ...]
    balancer: Balancer
    canary: Canary | None


class Router:
    def __init__(
        self, path: str | Path, registry: BackendRegistry, *, resolver: Resolver = resolve,
        probe: Callable[[list[Backend]], None] = lambda backends: None,
    ) -> None:
        self.file = WatchedFile(path)
        self.routes: Mapping[str, Route] = {}
        self._registry = registry
        self._resolver = resolver
        self._probe = probe  # called with replicas never probed, before they are put in force
        self._addresses: dict[Target, list[tuple[str, int]]] = {}
        self._lock = threading.Lock()  # one reload or re-resolution at a time

    # -- the routes file -----------------------------------------------------------------------

    def load(self) -> None:
        """Read the file and put it in force; raises RoutesFileError and changes nothing then."""
        try:
            data = self.file.read()
        except OSError as error:
            raise routes_file.RoutesFileError(
                f"cannot read routes file {self.file.path}: {error.strerror or error}"
            ) from None
        self._apply(data)

    def reload_if_changed(self) -> bool | None:
        """Put the file in force if its content changed: True applied, False rejected (logged;
        the routes in force stay), None unchanged."""
        try:
            data = self.file.changed()
        except OSError as error:
            log.error("routes file %s unreadable, keeping the routes in force: %s",
                      self.file.path, error.strerror or error)
            return False
        if data is None:
            return None
        try:
            self._apply(data)
        except routes_file.RoutesFileError as error:
            log.error("routes file rejected, keeping the routes in force: %s", error)
            return False
        log.info("routes reloaded", extra={"fields": {"routes": self.describe()}})
        return True

    def _apply(self, data: bytes) -> None:
        spec = routes_file.parse(data.decode(errors="replace"), str(self.file.path))
        with self._lock:
            self._install(spec)

    def _install(self, spec: Routes) -> None:
        targets = {t for model in spec.models.values() for t in model.targets}
        addresses = {t: self._addresses.get(t) or self._resolve(t, []) for t in targets}
        backends = self._backends_by_model(spec.models.items(), addresses)
        routes = {}
        for name, model in spec.models.items():
            old = self.routes.get(name)
            balancer = old.balancer if old else Balancer(name)  # keeps its round-robin turn
            canary = (
                Canary(model.versions) if model.versions
                else Canary(model.labels, by="label") if model.labels else None
            )
            routes[name] = Route(name, model.targets, balancer, canary)
        for name, route in routes.items():
            route.balancer.backends = backends[name]
        self.routes = routes
        self._addresses = addresses
        self._registry.retain(b for group in backends.values() for b in group)

    # -- DNS -----------------------------------------------------------------------------------

    def refresh_addresses(self) -> None:
        """Re-resolve host names; replicas that appeared join, replicas that went leave."""
        with self._lock:
            fresh = {t: self._resolve(t, old) for t, old in self._addresses.items()}
            if fresh == self._addresses:
                return
            log.info("backend addresses changed", extra={"fields": {"addresses": {
                str(t): [f"{h}:{p}" for h, p in fresh[t]] for t in fresh if fresh[t] != self._addresses[t]
            }}})
            routes = self.routes
            backends = self._backends_by_model(routes.items(), fresh)
            for name, route in routes.items():
                route.balancer.backends = backends[name]
            self._addresses = fresh
            self._registry.retain(b for group in backends.values() for b in group)

    def _resolve(self, target: Target, previous: list[tuple[str, int]]) -> list[tuple[str, int]]:
        try:
            return self._resolver(target)
        except OSError as error:
            log.warning("cannot resolve backend %s, keeping %d known addresses: %s",
                        target, len(previous), error)
            return previous

    def _backends_by_model(
        self, models: Iterable[tuple[str, ModelRoute | Route]], addresses: Addresses
    ) -> dict[str, tuple[Backend, ...]]:
        """Each model's replicas (from the registry, so shared ones stay shared), all probed."""
        result = {}
        for name, model in models:
            unique = dict.fromkeys(a for t in model.targets for a in addresses[t])
            result[name] = tuple(self._registry.get(host, port) for host, port in unique)
        unprobed = list({id(b): b for group in result.values() for b in group if not b.probed}.values())
        if unprobed:
            self._probe(unprobed)
        return result

    # -- what the routes say -------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, dict[str, int]]]:
        """Ready when every routed model has a replica that says it serves that model."""
        detail = {
            name: {"backends": len(r.balancer.backends), "ready": len(r.balancer.ready())}
            for name, r in self.routes.items()
        }
        return bool(detail) and all(d["ready"] for d in detail.values()), detail

    def describe(self) -> dict[str, object]:
        return {
            name: {"backends": [b.label for b in r.balancer.backends],
                   **({f"{r.canary.by}s": r.canary.weights} if r.canary else {})}
            for name, r in self.routes.items()
        }

    def backends(self) -> list[Backend]:
        return list({id(b): b for r in self.routes.values() for b in r.balancer.backends}.values())
