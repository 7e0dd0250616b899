"""Read a request into memory in the worker's event loop before a thread is spent on it.

Stock gthread hands a connection to a thread as soon as its first bytes arrive, and the thread
then blocks reading the rest. A slow client (slowloris: headers a byte at a time, or a body
that never completes) therefore holds a thread for as long as it likes, and as many slow
clients as a worker has threads (32) stop it answering anyone: measured here, 40 slow
connections made ``/healthz`` time out. This mixin keeps a connection in the event loop,
reading what has arrived without blocking, until the request head and a body of up to
``BODY_BUFFER`` bytes (by Content-Length) are in memory; only then does a thread take it, and
it parses from that buffer. A slow client now costs a socket and its bytes, not a thread.

Not covered: a chunked body, or one declared larger than ``BODY_BUFFER``, is handed over once
its head is complete (nginx in front buffers those, see SECURITY.md). A connection that never
completes its head is closed by the keep-alive sweep (keep-alive connections) or holds one
file descriptor of the worker's ``worker_connections``.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.http import RequestParser

HEAD_LIMIT = 64 * 1024  # Gunicorn refuses heads far smaller than this; past it, let it say so
BODY_BUFFER = 16 * 1024 * 1024  # above both services' default body limit (8 MiB)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
# A client that sent this waits for "100 Continue" (Gunicorn's, once it parses the head)
# before it sends the body: waiting for the body here first would stall it.
_EXPECT = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)


def complete(buffer: bytes | bytearray) -> bool:
    """Whether ``buffer`` holds a whole request head, and its body when that is small enough."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return len(buffer) > HEAD_LIMIT
    found = _CONTENT_LENGTH.search(buffer, 0, end + 2)
    if found is None or _EXPECT.search(buffer, 0, end + 2):
        return True  # no body, chunked, or a body sent only once asked for: hand it over now
    length = int(found.group(1))
    return length > BODY_BUFFER or len(buffer) - (end + 4) >= length


class BufferedRequests:
    """Mixin for a gthread worker: dispatch a connection only once its request is in memory."""

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        if conn.cfg.is_ssl:  # TLS bytes are not HTTP yet; Gunicorn's own path
            super().on_client_socket_readable(conn, client)  # type: ignore[misc]
            return
        buffer: bytearray = getattr(conn, "pending", None) or bytearray()
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return  # spurious wake-up: nothing to read yet
        except OSError:
            data = b""  # reset: let Gunicorn's own path close it
        buffer += data
        if data and not complete(buffer):
            conn.pending = buffer  # stays in the poller until more arrives
            return
        conn.pending = None
        if conn.parser is None:  # what TConn.init() would make (not init() itself: it marks
            conn.parser = RequestParser(conn.cfg, conn.sock, conn.client)  # the conn keep-alive)
        conn.parser.unreader.unread(bytes(buffer))  # parsed first, then the socket
        super().on_client_socket_readable(conn, client)  # type: ignore[misc]
