"""Two changes to what Gunicorn itself puts on the wire, installed by the worker module.

1. Its own error answers (a request line over 4,094 bytes, too many or too large headers, a
   malformed header), written before any application code runs, are JSON like every other
   error of ours instead of an HTML page (found by fuzzing with a 5,000-digit version).
2. A response's head and its first body bytes leave in one write, not two. A worker killed
   between the two writes left nginx holding a 200 head without its body: nginx had already
   passed the head on, could no longer retry, and the client saw a broken response (2 of 580
   requests when a gateway worker was SIGKILLed under load). One write is also one syscall
   less per response.
"""

from __future__ import annotations

import socket

import orjson
from gunicorn import util
from gunicorn.http.wsgi import Response

_original_write = Response.write


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: same status and reason, a JSON body."""
    body = orjson.dumps({"error": f"{reason}: {mesg}"[:300] if mesg else reason})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class _Collect:
    """Stands in for the socket while Gunicorn writes a head and a body, to send them as one."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))


def write_with_head(self: Response, arg: bytes) -> None:
    """Drop-in for ``Response.write``: the first write carries the head too."""
    if self.headers_sent or not isinstance(arg, bytes) or not arg:
        _original_write(self, arg)
        return
    sock, collect = self.sock, _Collect()
    self.sock = collect
    try:
        _original_write(self, arg)  # Gunicorn's own framing (head, length cap, chunking)
    finally:
        self.sock = sock
    sock.sendall(b"".join(collect.parts))


def install() -> None:
    util.write_error = write_json_error
    Response.write = write_with_head
