"""Slow clients (slowloris): a bounded number of connections that send a request a byte at a
time, or never finish its body, must not starve anyone else -- through nginx, and straight
at the gateway and an inference replica (Gunicorn threads would otherwise be held by them)."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.support import rawhttp
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

SLOW_CLIENTS = 96  # three times a worker's threads (32): enough to starve one that lends them
EXAMPLE = (REPO / "examples/digit-0.json").read_bytes()


def open_slow_clients(target: str, count: int, *, body: bool) -> list[socket.socket]:
    sockets = []
    for i in range(count):
        sock = rawhttp.connect(target, timeout=10)
        if body:  # a whole head, then a body that never completes
            sock.sendall(rawhttp.head("POST", "/v1/models/digits:predict",
                                      {"Content-Type": "application/json", "Content-Length": "1000"}) + b"{")
        else:  # half a head
            sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nX-Slow: " + str(i).encode())
        sockets.append(sock)
    return sockets


@pytest.mark.parametrize("body", [False, True], ids=["slow-head", "slow-body"])
def test_slow_clients_do_not_starve_others(target, body):
    slow = open_slow_clients(target, SLOW_CLIENTS, body=body)
    try:
        for round_ in range(3):  # and again as the slow ones trickle on
            for sock in slow:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass  # closed on it by the server: allowed
            started = time.monotonic()
            with requests.Session() as session:
                for _ in range(5):
                    response = session.post(f"{target}/v1/models/digits:predict", data=EXAMPLE, timeout=10)
                    assert response.status_code == 200, response.text[:200]
            took = time.monotonic() - started
            assert took < 5, f"round {round_}: 5 predictions took {took:.1f}s beside {SLOW_CLIENTS} slow clients"
            time.sleep(0.5)
    finally:
        for sock in slow:
            sock.close()
