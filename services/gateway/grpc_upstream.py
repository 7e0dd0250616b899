"""gRPC calls to one replica: several channels to its gRPC port, messages as bytes both ways.

A replica's workers share its gRPC port with ``SO_REUSEPORT``, and the kernel spreads
*connections* over them, not calls: one channel (one HTTP/2 connection) would put every call
of this gateway worker on one inference worker. Each replica therefore gets ``count`` channels,
each with a subchannel pool of its own (otherwise gRPC would share one connection between
them), used in turn; a retry takes the next one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    initial: Metadata
    trailing: Metadata


def channel_options(max_send: int) -> list[tuple[str, int]]:
    return [
        ("grpc.use_local_subchannel_pool", 1),  # a connection of its own per channel
        ("grpc.max_send_message_length", max_send),
        ("grpc.max_receive_message_length", -1),  # the replica bounds its answers
        # Reconnect soon after a replica restarts (gRPC's default backoff grows to 120 s);
        # until then its calls fail at once with UNAVAILABLE and are retried elsewhere.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.enable_retries", 0),  # the gateway retries, once, itself
    ]


class Channels:
    """``count`` channels to ``address`` (host:port); thread-safe. ``generation``: the replica's
    revivals when they were made (gRPC offers no way to cut short the reconnect backoff of a
    channel whose replica was down, so one that comes back gets new channels)."""

    def __init__(self, address: str, count: int, max_send: int, generation: int = 0) -> None:
        self.address = address
        self.generation = generation
        options = channel_options(max_send)
        self._channels = [grpc.insecure_channel(address, options=options) for _ in range(count)]
        self._stubs: dict[tuple[int, str], grpc.UnaryUnaryMultiCallable] = {}
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def pick(self) -> int:
        return next(self._turn) % len(self._channels)

    def call(
        self, index: int, method: str, body: bytes, metadata: Metadata, due: float, connect_wait: float = 0.0,
    ) -> Answer:
        """One call on channel ``index``, answered by ``due`` (``time.monotonic()``); raises
        :class:`grpc.RpcError` (also a ``grpc.Call``: code, details, trailing metadata) when the
        replica answers an error or none. With
        ``connect_wait``, first waits that long for the channel to connect (a channel that
        failed to connect fails calls at once until its next attempt), or raises
        :class:`grpc.FutureTimeoutError`."""
        if connect_wait > 0:
            grpc.channel_ready_future(self._channels[index]).result(timeout=connect_wait)
        timeout = due - time.monotonic()
        stub = self._stubs.get((index, method))
        if stub is None:
            with self._lock:
                stub = self._stubs.setdefault((index, method), self._channels[index].unary_unary(
                    method, request_serializer=None, response_deserializer=None, _registered_method=False,
                ))
        response, call = stub.with_call(body, timeout=timeout, metadata=metadata)
        return Answer(response, call.initial_metadata() or (), call.trailing_metadata() or ())

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
