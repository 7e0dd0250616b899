"""Per-request choice of a replica for one model: round-robin over the replicas that serve it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from services.gateway.upstream import Backend


class Balancer:
    """Round-robin across replicas whose last probe said they serve the model.

    When none does (probes lag a restart, or every replica is down) it falls back to all of
    them: trying costs a refused connection, refusing to try costs a request.
    """

    def __init__(self, model: str, backends: Sequence[Backend] = ()) -> None:
        self.model = model
        self.backends: tuple[Backend, ...] = tuple(backends)  # replaced whole when DNS changes
        self._turn = itertools.count()  # next() on a count is atomic under the GIL

    def ready(self) -> list[Backend]:
        return [b for b in self.backends if self.model in b.serving]

    def choose(self, avoid: Backend | None = None, *, grpc: bool = False) -> Backend | None:
        """The next replica, never ``avoid`` unless it is the only one; with ``grpc``, only
        replicas that said they serve gRPC."""
        backends = self.backends
        if grpc:
            backends = tuple(b for b in backends if b.grpc_port is not None)
        count = len(backends)
        if count == 0:
            return None
        start = next(self._turn)
        fallback = None
        for step in range(count):
            backend = backends[(start + step) % count]
            if backend is avoid:
                continue
            if self.model in backend.serving:
                return backend
            fallback = fallback or backend
        return fallback or avoid
