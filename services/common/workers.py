"""A Gunicorn gthread worker whose graceful stop loses no connection it could still serve.

Stock gthread stops its loop at once on SIGTERM: connections the kernel already accepted but
the worker had not picked up yet (the listen backlog, or sockets waiting in its poller) are
closed unanswered -- a client sees a reset for a request it sent before the stop (gunicorn
issue #3397). This worker drains first: it reports "not ready", stops keep-alive, takes every
pending connection and queues its request, and only ends the loop once nothing is left (or the
drain budget is spent); in-flight requests then finish within ``graceful_timeout`` as usual.
"""

from __future__ import annotations

import errno
import selectors
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from services.common import lifecycle

DRAIN_SECONDS = 5.0


class DrainingThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        lifecycle.draining.set()
        if self._drain_until is None:
            self._drain_until = time.monotonic() + min(DRAIN_SECONDS, self.cfg.graceful_timeout)
            self.cfg.set("keepalive", 0)  # every response from now on says Connection: close

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        if self._drain_until is not None:
            self._drain_step()

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
