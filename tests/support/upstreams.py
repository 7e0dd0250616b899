"""Deliberately broken inference replicas: real HTTP servers that are slow, shed load or fail.

Test doubles for what a real inference server will not do on demand. They answer ``/readyz``
like one (so the gateway's probes take them for ready) and record what they were sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Upstream:
    """Answers every model call with ``status`` and ``body`` after ``delay`` seconds."""

    def __init__(self, *, models: tuple[str, ...] = ("digits",), status: int = 200,
                 body: bytes = b'{"predictions": []}', delay: float = 0.0,
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.delay = status, body, delay
        self.headers = headers or {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        ready = json.dumps({"status": "ready", "models": {m: 1 for m in models}}).encode()
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def model_calls(self) -> int:
        return len(self.seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
