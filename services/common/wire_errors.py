"""Gunicorn's own error answers, in our JSON shape instead of its HTML page.

Gunicorn answers requests it cannot parse (a request line over 4,094 bytes, too many or too
large headers, a malformed header) itself, before any application code runs, with an HTML
page. Clients of both services expect ``{"error": ...}`` for every failure (found by fuzzing
with a 5,000-digit version), so the worker module installs this writer in its place.
"""

from __future__ import annotations

import socket

import orjson
from gunicorn import util


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: same status and reason, a JSON body."""
    body = orjson.dumps({"error": f"{reason}: {mesg}"[:300] if mesg else reason})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    util.write_error = write_json_error
