"""One backend replica (an inference server address) and HTTP exchanges with it.

Each replica owns a pool of keep-alive connections. Failures are sorted by what they allow: a
connection that never opened sent nothing; one that broke before an answer may have been
processed, which is still safe to repeat because predictions are idempotent; a timeout means
the deadline is spent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.gateway import httpclient

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the gateway's own server writes.
_NOT_RELAYED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "content-length", "date", "server", "x-request-id"}
)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Backend:
    """A replica: its address, a connection pool, and which models it last said it serves."""

    def __init__(self, host: str, port: int, *, pool_size: int) -> None:
        self.host = host
        self.port = port
        self.label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # Models this replica reported ready at the last probe; emptied by a failed connect.
        self.serving: frozenset[str] = frozenset()
        self.versions: dict[str, str] = {}  # model -> default version, at the last probe (the status page)
        self.probed = False  # set by the first probe; new replicas are probed before use
        self.grpc_port: int | None = None  # its gRPC port, from its probes (None: no gRPC)
        self.grpc: Any = None  # the gRPC front door's channels to it (services/gateway/grpc_front.py)
        self.revivals = 0  # times a probe found it ready again after it was not
        self._pool = httpclient.ConnectionPool(host, port, max_idle=pool_size)

    def __repr__(self) -> str:
        return f"Backend({self.label})"

    def send(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
        *, connect_timeout: float, deadline: float,
    ) -> Reply:
        """One request, bodies as bytes both ways (never decoded or re-encoded); no answer
        raises :class:`httpclient.TransportError` naming this replica."""
        try:
            response = self._pool.request(
                method, target, body, headers, connect_timeout=connect_timeout, deadline=deadline
            )
        except httpclient.TransportError as error:
            error.backend = self.label
            raise
        relayed = [(k, v) for k, v in response.headers if k.lower() not in _NOT_RELAYED]
        return Reply(response.status, relayed, response.body)

    def close(self) -> None:
        self._pool.close()
        if self.grpc is not None:
            self.grpc.close()


class BackendRegistry:
    """Replicas by address, shared by every model and every routes-file generation.

    Reloading routes or re-resolving DNS keeps the replicas that stay (their pools stay warm,
    their health stays known) and closes the ones that go.
    """

    def __init__(self, pool_size: int, close_after: float) -> None:
        self._pool_size = pool_size
        self._close_after = close_after
        self._lock = threading.Lock()
        self._backends: dict[tuple[str, int], Backend] = {}

    def get(self, host: str, port: int) -> Backend:
        with self._lock:
            backend = self._backends.get((host, port))
            if backend is None:
                backend = self._backends[(host, port)] = Backend(host, port, pool_size=self._pool_size)
            return backend

    def retain(self, keep: Iterable[Backend]) -> None:
        """Forget every replica not in ``keep``; close its pool once requests using it are done."""
        wanted = {id(b) for b in keep}
        with self._lock:
            gone = [key for key, b in self._backends.items() if id(b) not in wanted]
            closing = [self._backends.pop(key) for key in gone]
        for backend in closing:
            timer = threading.Timer(self._close_after, backend.close)
            timer.daemon = True
            timer.start()
