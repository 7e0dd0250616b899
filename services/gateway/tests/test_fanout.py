"""Summing Triton statistics over replicas (pure, no server)."""

from __future__ import annotations

from services.gateway.fanout import merge


def stat(name, version, success, ns, last, batches):
    return {
        "name": name, "version": version, "last_inference": last, "inference_count": success * 2,
        "execution_count": sum(count for _, count in batches),
        "inference_stats": {s: {"count": success, "ns": ns} for s in ("success", "fail", "queue")},
        "batch_stats": [{"batch_size": size, "compute_infer": {"count": count, "ns": count * 10}}
                        for size, count in batches],
    }


def test_counts_and_durations_add_up_and_the_last_inference_is_the_latest():
    a = {"model_stats": [stat("digits", "1", 3, 300, 1000, [(1, 2), (2, 1)]), stat("other", "1", 1, 5, 7, [])]}
    b = {"model_stats": [stat("digits", "1", 4, 400, 2000, [(2, 3), (4, 1)])]}
    merged = {(s["name"], s["version"]): s for s in merge([a, b])["model_stats"]}
    digits = merged[("digits", "1")]
    assert digits["inference_stats"]["success"] == {"count": 7, "ns": 700}
    assert digits["inference_count"] == 14 and digits["execution_count"] == 7
    assert digits["last_inference"] == 2000
    assert digits["batch_stats"] == [
        {"batch_size": 1, "compute_infer": {"count": 2, "ns": 20}},
        {"batch_size": 2, "compute_infer": {"count": 4, "ns": 40}},
        {"batch_size": 4, "compute_infer": {"count": 1, "ns": 10}},
    ]
    assert merged[("other", "1")]["inference_stats"]["fail"] == {"count": 1, "ns": 5}


def test_one_replica_is_itself_and_none_is_empty():
    one = {"model_stats": [stat("digits", "2", 1, 9, 3, [(1, 1)])]}
    assert merge([one]) == one
    assert merge([]) == {"model_stats": []}
