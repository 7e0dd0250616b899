"""A small pooled HTTP/1.1 client for one upstream address: bytes in, bytes out.

Why not urllib3 or http.client: measured on the gateway's hot path, urllib3 costs about 320 µs of
CPU per request and http.client 170 µs (mostly header objects and email-style header parsing),
against about 50 µs for this client -- and the gateway's CPU per request is what its share of a
machine's throughput is. It does what the gateway needs and nothing else: one ``sendall`` per
request, keep-alive connections in a LIFO pool, responses framed by Content-Length, chunked
encoding or connection close (RFC 9112 section 6.3), an absolute deadline on every read.

A pooled connection the server has closed (its keep-alive ran out) is caught before use or,
in the race where the close crosses our request, by resending once on a new connection:
nothing had been answered, and the gateway only forwards idempotent requests.
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Mapping

from services.common import naturals

MAX_HEAD_BYTES = 64 * 1024
_RECV = 256 * 1024
_NO_BODY = {204, 304}


class TransportError(Exception):
    """No answer to a request: the base of the ways an exchange fails without one (httpx's
    ``TransportError``). ``reason`` names the way in metrics and retries; ``backend`` is set by
    the replica that owns the connection (``upstream.Backend``), for the access log."""

    reason = "transport"

    def __init__(self, message: str, *, backend: str = "") -> None:
        super().__init__(message)
        self.backend = backend


class ConnectError(TransportError):
    """The connection could not be opened: nothing was sent."""

    reason = "connect"


class ConnectionLost(TransportError):
    """The connection closed or broke before the whole answer arrived (e.g. the replica died
    mid-request); predictions are idempotent, so repeating one is still safe."""

    reason = "dropped"

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered  # some of the answer had arrived


class ReadTimeout(TransportError):
    """The deadline passed while waiting for the answer."""

    reason = "timeout"


class MalformedResponse(ConnectionLost):
    """The server answered something that is not HTTP/1.x."""


def _still_open(sock: socket.socket) -> bool:
    """An idle connection with nothing to read: the server has not closed it (or sent junk)."""
    sock.settimeout(0.0)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers  # as received, in order, names as the server spelled them
        self.body = body


class _Conn:
    __slots__ = ("sock", "buffer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()  # bytes received past the previous response (should stay empty)


class ConnectionPool:
    """Keep-alive connections to one ``host:port``; safe to share between threads."""

    def __init__(self, host: str, port: int, max_idle: int = 32) -> None:
        self.host = host
        self.port = port
        self._host_header = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode()
        self._idle: collections.deque[_Conn] = collections.deque()  # append/pop are atomic
        self._max_idle = max_idle
        self._closed = False

    def request(
        self, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
        *, connect_timeout: float, deadline: float,
    ) -> Response:
        """Send one request and read its whole answer by ``deadline`` (a time.monotonic())."""
        head = self._head(method, target, body, headers)
        conn = self._take_idle()
        if conn is not None:
            try:
                return self._exchange(conn, head, body, deadline)
            except ConnectionLost as error:
                if error.answered:
                    raise
                # The server closed this idle connection as we used it: resend on a new one.
        conn = self._connect(connect_timeout, deadline)
        return self._exchange(conn, head, body, deadline)

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().sock.close()

    # -- connections ---------------------------------------------------------------------------

    def _take_idle(self) -> _Conn | None:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return None
            if not conn.buffer and _still_open(conn.sock):
                return conn
            conn.sock.close()

    def _connect(self, connect_timeout: float, deadline: float) -> _Conn:
        timeout = min(connect_timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise ReadTimeout("deadline passed before connecting")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError:
            raise ConnectError(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as error:
            raise ConnectError(f"connect to {self.host}:{self.port}: {error.strerror or error}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(sock)

    def _release(self, conn: _Conn) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            conn.sock.close()
        else:
            self._idle.append(conn)

    # -- one exchange --------------------------------------------------------------------------

    def _head(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\nHost: ".encode("latin-1"), self._host_header, b"\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body is not None:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        return b"".join(lines)

    def _exchange(self, conn: _Conn, head: bytes, body: bytes | None, deadline: float) -> Response:
        reusable = False
        try:
            try:
                conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
                conn.sock.sendall(head + body if body and len(body) < 65536 else head)
                if body and len(body) >= 65536:
                    conn.sock.sendall(body)
            except TimeoutError:
                raise ReadTimeout("deadline passed while sending the request") from None
            except OSError as error:
                raise ConnectionLost(f"connection lost while sending: {error}") from None
            response, reusable = self._read_response(conn, deadline)
            return response
        finally:
            if reusable:
                self._release(conn)
            else:
                conn.sock.close()

    def _recv(self, conn: _Conn, deadline: float, answered: bool) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("deadline passed waiting for the answer")
        conn.sock.settimeout(remaining)
        try:
            return conn.sock.recv(_RECV)
        except TimeoutError:
            raise ReadTimeout("deadline passed waiting for the answer") from None
        except OSError as error:
            raise ConnectionLost(f"connection lost: {error}", answered) from None

    def _read_response(self, conn: _Conn, deadline: float) -> tuple[Response, bool]:
        buffer = conn.buffer
        while True:  # skip interim 1xx answers (e.g. 100 Continue)
            status, version, headers, fields = self._read_head(conn, buffer, deadline)
            if status >= 200 or status == 101:
                break
        connection = fields.get("connection", "").lower()
        keep_alive = (version == "HTTP/1.1" and "close" not in connection) or (
            version == "HTTP/1.0" and "keep-alive" in connection
        )
        if status in _NO_BODY:
            return Response(status, headers, b""), keep_alive
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return Response(status, headers, self._read_chunked(conn, buffer, deadline)), keep_alive
        length = fields.get("content-length")
        if length is not None:
            size = naturals.parse(length)
            if size is None:
                raise MalformedResponse(f"bad Content-Length {length[:40]!r}", True)
            body = self._read_exactly(conn, buffer, size, deadline)
            return Response(status, headers, body), keep_alive
        while chunk := self._recv(conn, deadline, True):  # framed by the close
            buffer += chunk
        body = bytes(buffer)
        buffer.clear()
        return Response(status, headers, body), False

    def _read_head(
        self, conn: _Conn, buffer: bytearray, deadline: float
    ) -> tuple[int, str, list[tuple[str, str]], dict[str, str]]:
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise MalformedResponse("response head too large", True)
            chunk = self._recv(conn, deadline, bool(buffer))
            if not chunk:
                raise ConnectionLost("connection closed before the answer", bool(buffer))
            buffer += chunk
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = naturals.parse(rest[:3])
        if not version.startswith("HTTP/1.") or code is None or not 100 <= code <= 999:
            raise MalformedResponse(f"not an HTTP/1.x status line: {status_line[:60]!r}", True)
        headers = []
        fields = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise MalformedResponse(f"bad header line {line[:60]!r}", True)
            value = value.strip()
            headers.append((name, value))
            fields[name.strip().lower()] = value
        return code, version, headers, fields

    def _read_exactly(self, conn: _Conn, buffer: bytearray, size: int, deadline: float) -> bytes:
        while len(buffer) < size:
            chunk = self._recv(conn, deadline, True)
            if not chunk:
                raise ConnectionLost("connection closed in the middle of the answer", True)
            buffer += chunk
        body = bytes(buffer[:size])
        del buffer[:size]
        return body

    def _read_line(self, conn: _Conn, buffer: bytearray, deadline: float) -> bytes:
        while (end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise MalformedResponse("chunk header too large", True)
            chunk = self._recv(conn, deadline, True)
            if not chunk:
                raise ConnectionLost("connection closed in the middle of the answer", True)
            buffer += chunk
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return line

    def _read_chunked(self, conn: _Conn, buffer: bytearray, deadline: float) -> bytes:
        parts = []
        while True:
            size_text = self._read_line(conn, buffer, deadline).split(b";", 1)[0].strip()
            size = naturals.parse_hex(size_text.decode("latin-1"))
            if size is None:
                raise MalformedResponse(f"bad chunk size {size_text[:20]!r}", True)
            if size == 0:
                while self._read_line(conn, buffer, deadline):  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(conn, buffer, size, deadline))
            if self._read_exactly(conn, buffer, 2, deadline) != b"\r\n":
                raise MalformedResponse("chunk not followed by CRLF", True)
