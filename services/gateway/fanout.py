"""Calls that every replica of a model must hear, not one picked by the balancer.

Statistics (Triton's ``/stats``) are summed over the replicas, so that a client sees the
model's counts as one server's, as perf_analyzer compares them with its own. Triton's
repository load/unload acts on each replica; the call succeeds only when every replica says so.
"""

from __future__ import annotations

import threading
from typing import Any

from services.common import jsoncodec, tracing
from services.common.errors import BadGateway, GatewayTimeout, ServingError, Unavailable
from services.gateway.httpclient import ConnectionLost, TransportError
from services.gateway.proxy import Deadline, Forwarder
from services.gateway.routing import Route
from services.gateway.upstream import Reply

JSON = [("Content-Type", "application/json")]
Answer = Reply | ServingError  # a replica's reply, or the error that stands for its silence


def each_replica(
    forwarder: Forwarder, route: Route, method: str, target: str, body: bytes | None,
    headers: dict[str, str], due: Deadline, trace: tracing.TraceContext | None = None,
) -> list[tuple[str, Answer]]:
    """(replica, its reply or the error that says why there is none) for every replica of
    ``route``, asked at once."""
    backends = route.balancer.backends
    if not backends:
        raise Unavailable(f"model '{route.name}' has no replica to send to", retry_after=1)
    results: list[Answer] = [Unavailable("not asked")] * len(backends)

    def ask(index: int) -> None:
        label = backends[index].label
        try:
            answer = forwarder.attempt(route, backends[index], method, target, body, dict(headers), due, trace, "")
        except GatewayTimeout:
            answer = GatewayTimeout(f"replica {label} of model '{route.name}' did not answer within the deadline",
                                    upstream=label)
        results[index] = _unreachable(route, label, answer) if isinstance(answer, TransportError) else answer

    threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(len(backends))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [(b.label, r) for b, r in zip(backends, results, strict=True)]


def _unreachable(route: Route, label: str, error: TransportError) -> ServingError:
    if isinstance(error, ConnectionLost):
        return BadGateway(f"replica {label} of model '{route.name}' closed the connection without answering",
                          upstream=label)
    return Unavailable(f"replica {label} of model '{route.name}' could not be reached", retry_after=1,
                       upstream=label)


def all_must_agree(route: Route, answers: list[tuple[str, Answer]]) -> Reply:
    """Repository control: the first replica's refusal or absence is the answer, else its 200."""
    for _, answer in answers:
        if isinstance(answer, ServingError):
            raise answer
        if answer.status != 200:
            return answer
    return answers[0][1]  # type: ignore[return-value]  (every answer is a 200 Reply here)


def summed_statistics(route: Route, answers: list[tuple[str, Answer]]) -> Reply:
    """The replicas' statistics as one; replicas that cannot be reached are left out (and
    counted in ``X-Replicas``), and when none answers 200 the first answer stands."""
    bodies, first = [], None
    for label, answer in answers:
        if isinstance(answer, ServingError):
            first = first or answer
            continue
        if answer.status == 200:
            try:
                bodies.append(jsoncodec.loads(answer.body))
                continue
            except jsoncodec.JSONDecodeError:
                first = first or BadGateway(f"replica {label} answered malformed statistics")
                continue
        first = first or answer
    if not bodies:
        if isinstance(first, Reply):
            return first
        raise first or Unavailable(f"model '{route.name}' has no replica to send to", retry_after=1)
    merged = jsoncodec.dumps(merge(bodies))
    return Reply(200, [*JSON, ("X-Replicas", f"{len(bodies)}/{len(answers)}")], merged)


def _add_duration(into: dict[str, Any], stats: dict[str, Any]) -> None:
    for key, value in stats.items():
        if isinstance(value, dict):
            slot = into.setdefault(key, {"count": 0, "ns": 0})
            slot["count"] += int(value.get("count", 0))
            slot["ns"] += int(value.get("ns", 0))


def merge(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum Triton ``$stats_model_response`` bodies per (name, version): counts and durations
    add up, ``last_inference`` is the latest, batch statistics add up per batch size."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    batches: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for body in bodies:
        for stat in body.get("model_stats", []):
            key = (str(stat.get("name", "")), str(stat.get("version", "")))
            entry = merged.setdefault(key, {
                "name": key[0], "version": key[1], "last_inference": 0, "inference_count": 0,
                "execution_count": 0, "inference_stats": {}, "batch_stats": [],
            })
            entry["last_inference"] = max(entry["last_inference"], int(stat.get("last_inference", 0)))
            entry["inference_count"] += int(stat.get("inference_count", 0))
            entry["execution_count"] += int(stat.get("execution_count", 0))
            _add_duration(entry["inference_stats"], stat.get("inference_stats", {}))
            for batch in stat.get("batch_stats", []):
                size = int(batch.get("batch_size", 0))
                slot = batches.setdefault(key, {}).setdefault(size, {"batch_size": size})
                _add_duration(slot, {k: v for k, v in batch.items() if k != "batch_size"})
    for key, entry in merged.items():
        entry["batch_stats"] = [batches[key][size] for size in sorted(batches.get(key, {}))]
    return {"model_stats": [merged[key] for key in sorted(merged)]}
