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
import socket
import struct
import time
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


SO_TIMESTAMPNS = 35  # Linux; Python's socket module does not name it
_TIMESPEC = struct.Struct("qq")


def stamp_arrivals(listener: socket.socket) -> None:
    """Have the kernel stamp every packet with its arrival (inherited by accepted sockets)."""
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        pass  # not Linux: arrivals count from when the worker reads them


def receive_stamped(sock: socket.socket) -> tuple[bytes, float]:
    """Bytes waiting on ``sock`` and when the first of them arrived (``time.monotonic()``).

    The kernel's stamp, not the moment of reading: a busy worker can leave a request in its
    socket for a long time before its loop gets to it (measured: p99 0.3 s on a saturated
    machine), and that wait is the request's as much as the one for a thread."""
    data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(_TIMESPEC.size))
    now = time.monotonic()
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(value)
            age = time.time() - (seconds + nanoseconds / 1e9)
            return data, now - min(max(age, 0.0), 60.0)  # a clock step must not invent waits
    return data, now


class BufferedRequests:
    """Mixin for a gthread worker: dispatch a connection only once its request is in memory."""

    def answer_in_loop(self, conn: Any, buffer: bytearray) -> bool:
        """Whether the worker answered the whole request in ``buffer`` itself (the front door
        of ``services.runtime.workers``); False hands it to a thread."""
        return False

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        if conn.cfg.is_ssl:  # TLS bytes are not HTTP yet; Gunicorn's own path
            super().on_client_socket_readable(conn, client)  # type: ignore[misc]
            return
        buffer: bytearray | None = getattr(conn, "pending", None)
        try:
            if buffer is None:  # a request's first bytes: when did they really arrive?
                data, conn.stamped = receive_stamped(conn.sock)
                buffer = bytearray()
            else:
                data = conn.sock.recv(65536)
        except BlockingIOError:
            return  # spurious wake-up: nothing to read yet
        except OSError:
            data, buffer = b"", buffer or bytearray()  # reset: let Gunicorn's own path close it
        buffer += data
        if data and not complete(buffer):
            conn.pending = buffer  # stays in the poller until more arrives
            return
        conn.pending = None
        if data and self.answer_in_loop(conn, buffer):
            return  # answered without a thread (the front door refused it)
        if conn.parser is None:  # what TConn.init() would make (not init() itself: it marks
            conn.parser = RequestParser(conn.cfg, conn.sock, conn.client)  # the conn keep-alive)
        conn.parser.unreader.unread(bytes(buffer))  # parsed first, then the socket
        super().on_client_socket_readable(conn, client)  # type: ignore[misc]
