"""The HTTP/1.1 client against a scripted real server: framing, keep-alive, failures, deadlines."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from services.gateway.httpclient import (
    ConnectError,
    ConnectionLost,
    ConnectionPool,
    MalformedResponse,
    ReadTimeout,
)

Script = Callable[[socket.socket, bytes], None]


class ScriptedServer:
    """Accepts connections on a free port; each request gets the next script's bytes."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while self.scripts:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                self.requests.append(request)
                self.scripts.pop(0)(conn, request)

    def close(self) -> None:
        self.listener.close()


def reply(data: bytes) -> Script:
    return lambda conn, request: conn.sendall(data)


def reply_and_close(data: bytes) -> Script:
    def script(conn: socket.socket, request: bytes) -> None:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    return script


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def call(pool: ConnectionPool, body: bytes | None = b"{}", timeout: float = 5.0):
    return pool.request("POST", "/x", body, {"Content-Type": "application/json"},
                        connect_timeout=1.0, deadline=time.monotonic() + timeout)


@pytest.fixture
def server_of():
    servers = []

    def make(*scripts: Script) -> ScriptedServer:
        servers.append(ScriptedServer(*scripts))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_one_request_one_write_and_keep_alive_reuse(server_of):
    server = server_of(reply(OK), reply(OK))
    pool = ConnectionPool("127.0.0.1", server.port)
    first = call(pool, b'{"a": 1}')
    assert (first.status, first.body) == (200, b"{}")
    assert ("Content-Type", "application/json") in first.headers
    call(pool)
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)
    assert server.requests[0].endswith(b'Content-Length: 8\r\n\r\n{"a": 1}')


def test_chunked_and_close_delimited_bodies_and_interim_answers(server_of):
    chunked = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer: x\r\n\r\n")
    server = server_of(reply(chunked), reply_and_close(b"HTTP/1.0 200 OK\r\n\r\nuntil the end"), reply(OK))
    pool = ConnectionPool("127.0.0.1", server.port)
    assert call(pool).body == b"abcdefg"
    assert call(pool).body == b"until the end"
    assert call(pool).status == 200
    assert server.connections == 2  # the close-delimited answer used its connection up


def test_no_body_statuses_and_connection_close(server_of):
    server = server_of(
        reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
        reply_and_close(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
                        b"Content-Length: 3\r\n\r\nno!"),
        reply(OK),
    )
    pool = ConnectionPool("127.0.0.1", server.port)
    no_content = call(pool)
    assert (no_content.status, no_content.body) == (204, b"")
    shed = call(pool, None)
    assert (shed.status, shed.body) == (503, b"no!") and ("Retry-After", "1") in shed.headers
    assert call(pool).status == 200
    assert server.connections == 2


def test_a_pooled_connection_closed_by_the_server_is_replaced(server_of):
    server = server_of(reply_and_close(OK[:-2].replace(b"Content-Length: 2", b"Content-Length: 0")), reply(OK))
    pool = ConnectionPool("127.0.0.1", server.port)
    call(pool)  # framed by length, so the client pools it; then the server closes it
    time.sleep(0.1)
    assert call(pool).status == 200
    assert server.connections == 2


def test_the_close_racing_a_request_is_resent_once_on_a_new_connection(server_of):
    def close_without_answer(conn: socket.socket, request: bytes) -> None:
        conn.shutdown(socket.SHUT_RDWR)

    server = server_of(reply(OK), close_without_answer, reply(OK))
    pool = ConnectionPool("127.0.0.1", server.port)
    call(pool)
    assert call(pool).status == 200  # lost on the reused connection, answered on a new one
    assert len(server.requests) == 3 and server.connections == 2


def test_a_fresh_connection_that_breaks_is_reported_not_resent(server_of):
    server = server_of(lambda conn, request: conn.shutdown(socket.SHUT_RDWR))
    with pytest.raises(ConnectionLost) as lost:
        call(ConnectionPool("127.0.0.1", server.port))
    assert not lost.value.answered
    assert len(server.requests) == 1


def test_half_an_answer_is_lost_and_marked_answered(server_of):
    server = server_of(reply_and_close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
    with pytest.raises(ConnectionLost) as lost:
        call(ConnectionPool("127.0.0.1", server.port))
    assert lost.value.answered


@pytest.mark.parametrize("garbage", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
def test_garbage_is_a_malformed_response(server_of, garbage):
    server = server_of(reply_and_close(garbage))
    with pytest.raises(MalformedResponse):
        call(ConnectionPool("127.0.0.1", server.port))


# "²" is one latin-1 byte (heads are decoded as latin-1) and "²".isdigit() is true; "١" is an
# Arabic-Indic digit, which int() reads as 1. The first escaped as a bare ValueError.
_BAD_NUMBERS = [
    "HTTP/1.1 ²00 OK\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\n{}",
    "HTTP/1.1 ١00 OK\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.1 200 OK\r\nContent-Length: ١\r\n\r\n{}",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n²\r\nab\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n١\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\na\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\na\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("answer", [
    text.encode(encoding) for text in _BAD_NUMBERS for encoding in ("latin-1", "utf-8")
    if encoding == "utf-8" or text.isascii() or "²" in text
])
def test_numbers_in_the_framing_are_ascii_digits_only(server_of, answer):
    server = server_of(reply_and_close(answer))
    with pytest.raises(MalformedResponse):
        call(ConnectionPool("127.0.0.1", server.port))


def test_the_deadline_bounds_the_whole_answer(server_of):
    def trickle(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        try:
            for _ in range(20):
                time.sleep(0.05)
                conn.sendall(b"x")
        except OSError:
            pass  # the client gave up, as it should

    server = server_of(trickle)
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        call(ConnectionPool("127.0.0.1", server.port), timeout=0.3)
    assert time.monotonic() - started < 0.6


def test_refused_connections_are_connect_errors():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectError):
            call(ConnectionPool("127.0.0.1", port))


def test_large_bodies_both_ways(server_of):
    big = bytes(range(256)) * 4096  # 1 MiB
    server = server_of(reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big))
    assert call(ConnectionPool("127.0.0.1", server.port), big).body == big
    assert server.requests[0].endswith(big)
