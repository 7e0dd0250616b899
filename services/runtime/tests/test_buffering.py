"""When a request counts as fully arrived, so that a thread may take it."""

import pytest

from services.runtime.buffering import BODY_BUFFER, HEAD_LIMIT, complete


@pytest.mark.parametrize("data, done", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}", False),
    (b"POST / HTTP/1.1\r\ncontent-length:  4 \r\n\r\n{}{}", True),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: " + str(BODY_BUFFER + 1).encode() + b"\r\n\r\n", True),
    (b"GET /" + b"a" * HEAD_LIMIT, True),  # too long to wait for: Gunicorn refuses it
    (b"POST / HTTP/1.1\r\nX-Content-Length: 9\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n", True),
])
def test_a_request_is_complete_once_its_head_and_small_body_are_in(data, done):
    assert complete(data) is done
