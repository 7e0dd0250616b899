"""Deliberately broken inference replicas: real HTTP (and gRPC) servers that are slow, shed load or fail.

Test doubles for what a real inference server will not do on demand. They answer ``/readyz``
like one (so the gateway's probes take them for ready) and record what they were sent.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import grpc

from tests.support.standin import LoopbackServer


class Upstream:
    """Answers every model call with ``status`` and ``body`` after ``delay`` seconds."""

    def __init__(self, *, models: tuple[str, ...] = ("digits",), status: int = 200,
                 body: bytes = b'{"predictions": []}', delay: float = 0.0,
                 headers: dict[str, str] | None = None, grpc_port: int | None = None) -> None:
        self.status, self.body, self.delay = status, body, delay
        self.headers = headers or {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        readiness: dict[str, object] = {"status": "ready", "models": {m: 1 for m in models}}
        if grpc_port is not None:
            readiness["grpc_port"] = grpc_port  # as an inference server with gRPC on says it
        ready = json.dumps(readiness).encode()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path == "/readyz":
                    self._send(200, ready, {})
                    return
                upstream.seen.append((self.command, self.path, dict(self.headers)))
                time.sleep(upstream.delay)
                self._send(upstream.status, upstream.body, upstream.headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the gateway gave up waiting: expected for a slow upstream

            do_GET = do_POST = _answer

        self._server = LoopbackServer(Handler)
        self.address = self._server.address

    def model_calls(self) -> int:
        return len(self.seen)

    def close(self) -> None:
        self._server.close()


@dataclass
class GrpcCall:
    method: str
    body: bytes
    metadata: dict[str, str]
    time_remaining: float | None


class GrpcUpstream:
    """A replica's gRPC port that answers every call with ``answer`` (bytes), or fails with
    ``error`` (code, details, trailing metadata), and records each call; ``http`` is its
    ``/readyz`` side, naming the port as an inference server does."""

    def __init__(self, *, answer: bytes = b"", error: tuple[grpc.StatusCode, str, tuple] | None = None,
                 models: tuple[str, ...] = ("digits",)) -> None:
        self.answer, self.error = answer, error
        self.seen: list[GrpcCall] = []
        upstream = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
                def answer(body: bytes, context: grpc.ServicerContext) -> bytes:
                    upstream.seen.append(GrpcCall(
                        details.method, body, {k: v for k, v in context.invocation_metadata() if isinstance(v, str)},
                        context.time_remaining()))
                    if upstream.error is not None:
                        code, message, trailing = upstream.error
                        context.set_trailing_metadata(trailing)
                        context.abort(code, message)
                    return upstream.answer

                return grpc.unary_unary_rpc_method_handler(answer)

        self._server = grpc.server(ThreadPoolExecutor(8), handlers=[Handler()])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.http = Upstream(models=models, grpc_port=self.port)

    def close(self) -> None:
        self._server.stop(None)
        self.http.close()
