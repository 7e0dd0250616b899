"""Active health checks: which models each replica is ready to serve, from its ``/readyz``.

Passive checks complement these: a refused connection takes a replica out at once (see
``proxy``); only a probe brings it back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from services.common import jsoncodec
from services.gateway.httpclient import TransportError
from services.gateway.upstream import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """What a replica's ``/readyz`` said: the models it serves warm, each with its default
    version (empty: not ready, or not there), and its gRPC port (None: it serves no gRPC)."""

    models: dict[str, str]
    grpc_port: int | None = None


def served_models(backend: Backend, timeout: float) -> Readiness:
    """The inference service answers ``/readyz`` with ``{"status": ..., "models": {name: version}}``
    (and ``"grpc_port"`` when its gRPC server is on), and 503 while loading or draining."""
    try:
        reply = backend.send(
            "GET", "/readyz", None, {}, connect_timeout=timeout, deadline=time.monotonic() + timeout
        )
    except TransportError:
        return Readiness({})
    if reply.status != 200:
        return Readiness({})
    try:
        body = jsoncodec.loads(reply.body)
    except jsoncodec.JSONDecodeError:
        return Readiness({})
    if not isinstance(body, dict) or not isinstance(body.get("models"), dict):
        return Readiness({})
    port = body.get("grpc_port")
    valid_port = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    return Readiness({str(name): str(version) for name, version in body["models"].items()},
                     port if valid_port else None)


class Prober:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def probe(self, backends: Sequence[Backend]) -> None:
        """Probe every replica at once (one slow replica must not delay the verdict on others)."""
        results = [Readiness({})] * len(backends)

        def check(index: int) -> None:
            results[index] = served_models(backends[index], self._timeout)

        threads = [threading.Thread(target=check, args=(i,), daemon=True) for i in range(len(backends))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for backend, readiness in zip(backends, results, strict=True):
            serving = frozenset(readiness.models)
            if serving != backend.serving or not backend.probed:
                self._report(backend, serving)
            if serving and not backend.serving:
                backend.revivals += 1  # back: connections that failed while it was down start afresh
            backend.serving = serving
            backend.versions = readiness.models
            if readiness.models:  # a replica that is down keeps the port it had, for when it is back
                backend.grpc_port = readiness.grpc_port
            backend.probed = True

    @staticmethod
    def _report(backend: Backend, serving: frozenset[str]) -> None:
        fields = {"backend": backend.label, "models": sorted(serving)}
        if serving:
            log.info("backend ready", extra={"fields": fields})
        else:
            log.warning("backend not ready", extra={"fields": fields})
