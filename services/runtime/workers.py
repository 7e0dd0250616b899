"""A Gunicorn gthread worker whose graceful stop loses no connection it could still serve.

Stock gthread stops its loop at once on SIGTERM: connections the kernel already accepted but
the worker had not picked up yet (the listen backlog, or sockets waiting in its poller) are
closed unanswered -- a client sees a reset for a request it sent before the stop (gunicorn
issue #3397). This worker drains first:

1. it reports "not ready" and answers from now on with ``Connection: close`` (on Kubernetes it
   already does so from the start of the preStop pause, announced by a file:
   ``lifecycle.is_draining``);
2. it takes every connection pending in the listen backlog, then stops listening (the other
   workers, or the new ones after a SIGHUP, take what arrives later);
3. it serves what it holds: requests in flight, and idle keep-alive connections, each of which
   gets ``IDLE_GRACE`` seconds to bring one more request before it is closed -- a client may be
   sending on one at that very moment, and would see a reset for a request never read;
4. it ends once nothing is pending, idle or in flight (or ``DRAIN_SECONDS`` are spent); requests
   still running then finish within ``graceful_timeout`` as usual.

Servers the app runs beside HTTP (the inference service's gRPC server: ``lifecycle.serve_beside``)
stop taking calls when the drain starts and get ``graceful_timeout`` for those in flight.

Measured with a Gunicorn SIGHUP (which stops every old worker this way) under 8 keep-alive
clients: without steps 3 and 4 as written (idle connections closed at once, in-flight ones
closed after their keep-alive answer) 1 to 6 requests failed per reload; with them, none.

It also reads what the application left of a request body before keeping the connection
alive. Otherwise those bytes wake the poller as if a new request had come, and the thread that
takes the connection blocks reading a request the client never sends (answering before reading
the body is common: 404, 415, a load-shedding 503): one thread lost per idle client, measured
here as a server that stopped answering at all.

It also stamps each request with the moment its bytes arrived (``lifecycle.arrived()``): the
time a request then waits for a free thread is invisible to the application otherwise, and
admission control needs it to keep its latency budget under overload.

It refuses at the front door: a request that the installed admission rule says cannot be
answered within its budget gets its 503 from the event loop as it arrives, before it waits for
a thread (``frontdoor``).

And it keeps the workers' shares of long-lived connections even (``spread``).
"""

from __future__ import annotations

import errno
import selectors
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from services.runtime import buffering, frontdoor, gunicorn_wire, lifecycle, spread
from services.runtime.buffering import BufferedRequests

gunicorn_wire.install()  # Gunicorn's own errors in JSON; head and body in one write

DRAIN_SECONDS = 5.0
IDLE_GRACE = 1.0
# Unread body bytes read and dropped to keep a connection alive; past this, it is closed.
DISCARD_LIMIT = 1 << 20
# Created when Gunicorn's master loads this worker class, before it forks the workers.
BOARD = spread.Board()


class DrainingThreadWorker(BufferedRequests, ThreadWorker):  # buffering: slow clients hold no thread
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drain_until: float | None = None
        self._listening = True
        self._idle_since: dict[TConn, float] = {}  # keep-alive connections seen idle while draining
        self.futures: set[futures.Future] = set()  # requests handed to threads and not done yet

    def run(self) -> None:
        BOARD.publish(self.age, self.nr_conns)
        try:
            self._loop()
        finally:
            BOARD.clear(self.age)

    def _loop(self) -> None:
        """Gunicorn's gthread loop, without its per-turn ``futures.wait`` over every request in
        the worker: that walk costs ~470 us with 300 requests queued (measured), on every turn,
        so an overloaded worker spent its event loop on bookkeeping instead of reading and
        refusing requests. Finished requests leave ``self.futures`` themselves (``_done``)."""
        for listener in self.sockets:
            listener.setblocking(False)
            buffering.stamp_arrivals(listener)
            # the listener's name may be gone during a graceful stop: capture it once, here
            acceptor = partial(self.accept, listener.getsockname())
            self.poller.register(listener, selectors.EVENT_READ, acceptor)
        while self.alive:
            self.notify()
            if self.nr_conns < self.worker_connections:
                for key, _ in self.poller.select(1.0):
                    key.data(key.fileobj)
            else:  # at the connection limit: wait for a request to finish
                futures.wait(self.futures.copy(), timeout=1.0, return_when=futures.FIRST_COMPLETED)
            if not self.is_parent_alive():
                break
            self.murder_keepalived()
        lifecycle.stop_beside(self.cfg.graceful_timeout)  # e.g. after the master went away
        self.tpool.shutdown(False)
        self.poller.close()
        for listener in self.sockets:
            listener.close()
        started = time.monotonic()
        futures.wait(self.futures.copy(), timeout=self.cfg.graceful_timeout)
        lifecycle.wait_beside(max(0.0, self.cfg.graceful_timeout - (time.monotonic() - started)))

    def _wrap_future(self, future: futures.Future, conn: TConn) -> None:
        future.conn = conn  # type: ignore[attr-defined]
        self.futures.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: futures.Future) -> None:
        self.futures.discard(future)
        self.finish_request(future)

    def accept(self, server: Any, listener: Any) -> None:
        if BOARD.should_yield(self.age, self.nr_conns) and spread.wait_for_peer(listener):
            return  # a worker with fewer connections took it
        super().accept(server, listener)
        BOARD.publish(self.age, self.nr_conns)

    def enqueue_req(self, conn: TConn) -> None:
        # When its first bytes reached the socket (buffering), else now (TLS: not buffered).
        conn.arrived = conn.__dict__.pop("stamped", None) or time.monotonic()
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

    def answer_in_loop(self, conn: TConn, buffer: bytearray) -> bool:
        admission = frontdoor.installed()
        inside = len(self.futures)  # queued or at work
        if admission is None or self._drain_until is not None or not admission.full(inside):
            return False  # the common case: no head parsed twice
        head = frontdoor.parse_head(buffer)
        if head is None or not admission.sheddable(head.method, head.path):
            return False
        if conn.parser is not None and conn.parser.unreader.buf.getbuffer().nbytes:
            return False  # bytes of an earlier read wait in Gunicorn's parser: let it have them
        refusal = admission.judge(head, inside=inside)
        if refusal is None:
            return False
        try:
            sent = conn.sock.send(refusal.response)
        except OSError:
            sent = -1
        with self._lock:
            try:
                self._keep.remove(conn)
            except ValueError:
                pass
            if head.keep_alive and sent == len(refusal.response) and self.alive:
                # Back to waiting for its next request, as a served keep-alive connection does.
                conn.initialized = True  # so Gunicorn takes it out of _keep when it is readable
                conn.set_timeout()
                self._keep.append(conn)
                conn = None
            else:
                try:
                    self.poller.unregister(conn.sock)
                except (KeyError, ValueError, OSError):
                    pass
        if conn is not None:
            self.nr_conns -= 1
            conn.close()
        admission.on_refused(refusal)
        return True

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Runs in a signal handler, possibly re-entered by the next SIGTERM (the master repeats
        # it while the worker drains): first mark the drain as started, and take no locks.
        if self._drain_until is not None:
            return
        self._drain_until = time.monotonic() + min(DRAIN_SECONDS, self.cfg.graceful_timeout)
        BOARD.clear(self.age)  # no peer should leave new connections to a worker that stops
        lifecycle.draining.set()
        self.cfg.set("keepalive", 0)  # every response from now on says Connection: close

    def murder_keepalived(self) -> None:  # called once per turn of the worker's loop
        if self._drain_until is None:
            if self.cfg.keepalive and lifecycle.is_draining():
                # The pod's preStop hook announced the drain: keep serving, but every response
                # from now on says Connection: close, so clients reconnect to another pod.
                self.cfg.set("keepalive", 0)
            super().murder_keepalived()
            BOARD.publish(self.age, self.nr_conns)
        else:
            # Not the stock sweep: with keep-alive set to 0 it would close every connection the
            # moment its in-flight answer went out, under a client about to reuse it.
            self._drain_step()

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        self._idle_since.pop(conn, None)  # it brought a request: no longer idle
        super().on_client_socket_readable(conn, client)

    def _drain_step(self) -> None:
        # The servers beside HTTP (gRPC) stop taking calls now and finish those in flight.
        lifecycle.stop_beside(self.cfg.graceful_timeout)
        now = time.monotonic()
        self._close_idle_connections(now)
        if self._listening and sum(self._accept_pending(listener) for listener in self.sockets) == 0:
            self._stop_listening()
        with self._lock:
            connections = len(self.poller.get_map()) - (len(self.sockets) if self._listening else 0)
        if (not self._listening and connections == 0 and not self.futures) or now > self._drain_until:
            self.alive = False

    def _stop_listening(self) -> None:
        with self._lock:
            for listener in self.sockets:
                try:
                    self.poller.unregister(listener)
                except (KeyError, ValueError, OSError):
                    pass
        self._listening = False

    def _close_idle_connections(self, now: float) -> None:
        closing = []
        with self._lock:
            for conn in list(self._keep):
                if now - self._idle_since.setdefault(conn, now) >= IDLE_GRACE:
                    self._keep.remove(conn)
                    self._idle_since.pop(conn, None)
                    try:
                        self.poller.unregister(conn.sock)
                    except (KeyError, ValueError, OSError):
                        pass
                    closing.append(conn)
        for conn in closing:
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
