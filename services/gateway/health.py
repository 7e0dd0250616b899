"""Active health checks: which models each replica is ready to serve, from its ``/readyz``.

Passive checks complement these: a refused connection takes a replica out at once (see
``proxy``); only a probe brings it back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from services.common import jsoncodec
from services.gateway.upstream import Backend, UpstreamFailure

log = logging.getLogger(__name__)


def served_models(backend: Backend, timeout: float) -> frozenset[str]:
    """The models a replica says are loaded and warm; empty when it is not ready or not there.

    The inference service answers ``/readyz`` with ``{"status": ..., "models": {name: version}}``
    and 503 while loading or draining.
    """
    try:
        reply = backend.send(
            "GET", "/readyz", None, {}, connect_timeout=timeout, deadline=time.monotonic() + timeout
        )
    except UpstreamFailure:
        return frozenset()
    if reply.status != 200:
        return frozenset()
    try:
        models = jsoncodec.loads(reply.body).get("models")
    except (jsoncodec.JSONDecodeError, AttributeError):
        return frozenset()
    return frozenset(models) if isinstance(models, dict) else frozenset()


class Prober:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def probe(self, backends: Sequence[Backend]) -> None:
        """Probe every replica at once (one slow replica must not delay the verdict on others)."""
        results: list[frozenset[str]] = [frozenset()] * len(backends)

        def check(index: int) -> None:
            results[index] = served_models(backends[index], self._timeout)

        threads = [threading.Thread(target=check, args=(i,), daemon=True) for i in range(len(backends))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for backend, serving in zip(backends, results, strict=True):
            if serving != backend.serving or not backend.probed:
                self._report(backend, serving)
            backend.serving = serving
            backend.probed = True

    @staticmethod
    def _report(backend: Backend, serving: frozenset[str]) -> None:
        fields = {"backend": backend.label, "models": sorted(serving)}
        if serving:
            log.info("backend ready", extra={"fields": fields})
        else:
            log.warning("backend not ready", extra={"fields": fields})
