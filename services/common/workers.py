"""A Gunicorn gthread worker whose graceful stop loses no connection it could still serve.

Stock gthread stops its loop at once on SIGTERM: connections the kernel already accepted but
the worker had not picked up yet (the listen backlog, or sockets waiting in its poller) are
closed unanswered -- a client sees a reset for a request it sent before the stop (gunicorn
issue #3397). This worker drains first: it reports "not ready", stops keep-alive, takes every
pending connection and queues its request, and only ends the loop once nothing is left (or the
drain budget is spent); in-flight requests then finish within ``graceful_timeout`` as usual.

It also reads what the application left of a request body before keeping the connection
alive. Otherwise those bytes wake the poller as if a new request had come, and the thread that
takes the connection blocks reading a request the client never sends (answering before reading
the body is common: 404, 415, a load-shedding 503): one thread lost per idle client, measured
here as a server that stopped answering at all.

It also stamps each request with the moment its bytes arrived (``lifecycle.arrived()``): the
time a request then waits for a free thread is invisible to the application otherwise, and
admission control needs it to keep its latency budget under overload.

And it keeps the workers' shares of long-lived connections even (``balance``).
"""

from __future__ import annotations

import errno
import selectors
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from services.common import balance, lifecycle

DRAIN_SECONDS = 5.0
# Unread body bytes read and dropped to keep a connection alive; past this, it is closed.
DISCARD_LIMIT = 1 << 20
# Created when Gunicorn's master loads this worker class, before it forks the workers.
BOARD = balance.Board()


class DrainingThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drain_until: float | None = None

    def run(self) -> None:
        BOARD.publish(self.age, self.nr_conns)
        try:
            super().run()
        finally:
            BOARD.clear(self.age)

    def accept(self, server: Any, listener: Any) -> None:
        if BOARD.should_yield(self.age, self.nr_conns) and balance.wait_for_peer(listener):
            return  # a worker with fewer connections took it
        super().accept(server, listener)
        BOARD.publish(self.age, self.nr_conns)

    def enqueue_req(self, conn: TConn) -> None:
        conn.arrived = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: TConn) -> Any:
        lifecycle.mark_arrival(getattr(conn, "arrived", None))
        try:
            return super().handle(conn)
        finally:
            lifecycle.mark_arrival(None)

    def handle_request(self, req: Any, conn: TConn) -> bool:
        keepalive = super().handle_request(req, conn)
        return keepalive and _discard_body(req)

    def handle_exit(self, sig: int, frame: Any) -> None:
        BOARD.clear(self.age)  # no peer should leave new connections to a worker that stops
        lifecycle.draining.set()
        if self._drain_until is None:
            self._drain_until = time.monotonic() + min(DRAIN_SECONDS, self.cfg.graceful_timeout)
            self.cfg.set("keepalive", 0)  # every response from now on says Connection: close

    def murder_keepalived(self) -> None:  # called once per turn of the worker's loop
        super().murder_keepalived()
        if self._drain_until is not None:
            self._drain_step()
        else:
            BOARD.publish(self.age, self.nr_conns)

    def _drain_step(self) -> None:
        self._close_idle_connections()
        taken = sum(self._accept_pending(listener) for listener in self.sockets)
        with self._lock:
            waiting = len(self.poller.get_map()) - len(self.sockets)
        if (taken == 0 and waiting == 0) or time.monotonic() > self._drain_until:
            self.alive = False

    def _close_idle_connections(self) -> None:
        while True:
            with self._lock:
                if not self._keep:
                    return
                conn = self._keep.popleft()
                try:
                    self.poller.unregister(conn.sock)
                except (KeyError, ValueError, OSError):
                    pass
            self.nr_conns -= 1
            conn.close()

    def _accept_pending(self, listener: Any) -> int:
        taken = 0
        server = listener.getsockname()
        while True:
            try:
                sock, client = listener.accept()
            except OSError as error:
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return taken
                raise
            conn = TConn(self.cfg, sock, client, server)
            self.nr_conns += 1
            taken += 1
            with self._lock:
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )


def _discard_body(req: Any) -> bool:
    """Read and drop the rest of ``req``'s body; False (close the connection) if it is too long."""
    left = DISCARD_LIMIT
    while left > 0:
        data = req.body.read(min(left, 64 * 1024))
        if not data:
            return True
        left -= len(data)
    return False
