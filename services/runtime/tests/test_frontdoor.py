"""The front door's pure parts: what it reads of a request, and when it refuses one."""

import orjson
import pytest

from services.runtime import frontdoor

GET = b"GET /v1/models/digits HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /v1/models/digits:predict?x=1 HTTP/1.1\r\nContent-Length: 2\r\nX-Request-ID: abc\r\n\r\n{}"


def test_a_whole_request_is_read_for_its_method_path_id_and_keep_alive():
    head = frontdoor.parse_head(POST)
    assert (head.method, head.path, head.request_id, head.keep_alive, head.size) == (
        "POST", "/v1/models/digits:predict", "abc", True, len(POST))
    assert frontdoor.parse_head(GET).keep_alive
    assert not frontdoor.parse_head(GET.replace(b"Host: x", b"Connection: close")).keep_alive
    assert not frontdoor.parse_head(GET.replace(b"HTTP/1.1", b"HTTP/1.0")).keep_alive
    assert frontdoor.parse_head(GET.replace(b"HTTP/1.1", b"HTTP/1.0").replace(
        b"Host: x", b"Connection: Keep-Alive")).keep_alive
    assert frontdoor.parse_head(b"GET /v2/models/a%2Fb HTTP/1.1\r\n\r\n").path == "/v2/models/a/b"
    unsafe = frontdoor.parse_head(GET.replace(b"Host: x", b"X-Request-ID: a b"))
    assert unsafe.request_id != "a b" and len(unsafe.request_id) == 32  # replaced, as the services do


@pytest.mark.parametrize("data", [
    POST[:-1],  # body not all here yet
    POST + GET,  # pipelined: two requests
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: \xc2\xb2\r\n\r\n{}",  # "²" is no length
    b"GET / HTTP/2.0\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n", b"GET * HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon\r\n\r\n", b"GET / HTTP/1.1\r\n",
])
def test_anything_unusual_is_left_to_the_normal_path(data):
    assert frontdoor.parse_head(data) is None


def admission(threads: int = 4) -> frontdoor.Admission:
    return frontdoor.Admission(0.5, lambda method, path: True, what="gateway", threads=threads)


def serve(door: frontdoor.Admission, seconds: list[float]) -> None:
    """One window of served requests, after the limit refused one (it was reached)."""
    door.judge(frontdoor.parse_head(POST), inside=int(door.limit) + 1)
    for value in seconds:
        door.observe(value)


def test_up_to_the_limit_requests_are_taken_then_refused_with_a_complete_503():
    door = admission(threads=1)  # a limit of 4: room for three waiting beside the one at work
    head = frontdoor.parse_head(POST)
    assert door.judge(head, inside=3) is None
    refusal = door.judge(head, inside=4)
    assert refusal is not None and (refusal.inside, refusal.limit) == (4, 4.0)
    status, _, rest = refusal.response.partition(b"\r\n")
    assert status == b"HTTP/1.1 503 Service Unavailable"
    fields, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in fields.decode().split("\r\n"))
    assert headers["Retry-After"] == "1" and headers["X-Request-ID"] == "abc"
    assert headers["Connection"] == "keep-alive" and int(headers["Content-Length"]) == len(body)
    assert "holds 4 requests, its limit for answers within the 500 ms budget" in orjson.loads(body)["error"]


def test_an_idle_worker_takes_anything_even_below_a_limit_of_one():
    door = admission(threads=1)
    for _ in range(40):
        serve(door, [0.02] + [0.9] * (frontdoor.WINDOW - 1))
    assert door.limit == 1.0
    assert door.judge(frontdoor.parse_head(POST), inside=0) is None


def test_the_limit_shrinks_while_queueing_makes_answers_late_and_grows_while_they_are_fast():
    door = admission(threads=32)
    queued = [0.05] * 32 + [0.8] * 32  # the fast ones ran at once, the slow ones waited
    serve(door, queued)
    assert door.limit == pytest.approx(115.2)  # from its start, 4 x threads
    serve(door, [0.05] * frontdoor.WINDOW)
    assert door.limit == pytest.approx(115.2 * 1.05 + 1)
    for _ in range(100):
        serve(door, [0.05] * frontdoor.WINDOW)
    assert door.limit == 4 * 32  # a queue, but a bounded one


def test_the_limit_stays_when_it_was_not_reached_or_every_answer_is_slow_by_itself():
    door = admission(threads=32)
    for value in [0.05] * 32 + [0.8] * 32:
        door.observe(value)  # never refused anything: the limit did not cause this
    assert door.limit == 128
    serve(door, [0.7] * frontdoor.WINDOW)  # each request takes 0.7 s on its own: no queue to cut
    assert door.limit == 128
    serve(door, [0.3] * frontdoor.WINDOW)  # between 0.6 x budget and the budget: hold
    assert door.limit == 128
