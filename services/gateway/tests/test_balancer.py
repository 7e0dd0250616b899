"""Replica choice: round-robin over the ready ones, never the avoided one while others exist."""

from __future__ import annotations

from collections import Counter

from services.gateway.balancer import Balancer
from services.gateway.upstream import Backend


def replicas(count: int, serving: frozenset[str] = frozenset({"m"})) -> list[Backend]:
    backends = [Backend("127.0.0.1", 9000 + i, pool_size=1) for i in range(count)]
    for backend in backends:
        backend.serving = serving
    return backends


def test_round_robin_over_ready_replicas():
    backends = replicas(3)
    balancer = Balancer("m", backends)
    assert Counter(balancer.choose() for _ in range(300)) == {b: 100 for b in backends}


def test_replicas_that_do_not_serve_the_model_are_skipped():
    a, b, c = replicas(3)
    b.serving = frozenset()
    c.serving = frozenset({"other"})
    balancer = Balancer("m", [a, b, c])
    assert {balancer.choose() for _ in range(10)} == {a}
    assert balancer.ready() == [a]


def test_a_retry_avoids_the_replica_that_failed():
    a, b = replicas(2)
    balancer = Balancer("m", [a, b])
    assert all(balancer.choose(avoid=a) is b for _ in range(10))
    only = Balancer("m", [a])
    assert only.choose(avoid=a) is a  # one replica: the retry goes where it can


def test_with_no_ready_replica_every_replica_is_still_tried():
    a, b = replicas(2, serving=frozenset())
    balancer = Balancer("m", [a, b])
    assert {balancer.choose() for _ in range(10)} == {a, b}
    assert balancer.choose(avoid=a) is b
    assert Balancer("m").choose() is None
