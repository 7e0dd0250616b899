"""The connection board: who counts as a live peer, and when a busier worker yields."""

import os
import socket
import time

from services.runtime import spread


def test_a_worker_yields_only_to_a_live_peer_with_clearly_fewer_connections(monkeypatch):
    board = spread.Board(slots=8)
    board.publish(1, 10)
    assert board.fewest_elsewhere(1) is None  # alone: never wait for anyone
    board.publish(2, 9)
    assert not board.should_yield(1, 10)  # within the margin
    board.publish(2, 4)
    assert board.should_yield(1, 10) and not board.should_yield(2, 4)
    board.clear(2)  # a stopping worker is nobody to wait for
    assert not board.should_yield(1, 10)
    board.publish(3, 0)
    later = time.monotonic() + spread.STALE_SECONDS + 1
    monkeypatch.setattr(spread.time, "monotonic", lambda: later)
    assert not board.should_yield(1, 10), "a worker that stopped ticking is dead"


def test_the_board_is_shared_with_forked_workers():
    board = spread.Board(slots=4)
    pid = os.fork()
    if pid == 0:
        board.publish(3, 7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert board.fewest_elsewhere(0) == 7


def test_waiting_for_a_peer_ends_when_the_connection_is_taken():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        assert spread.wait_for_peer(listener), "nothing pending: as good as taken"
        client = socket.create_connection(listener.getsockname())
        started = time.monotonic()
        assert not spread.wait_for_peer(listener, 0.02), "nobody took it: take it yourself"
        assert time.monotonic() - started >= 0.02
        client.close()
