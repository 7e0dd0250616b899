"""Triton's statistics and model configuration from a servable's signature (pure, no server)."""

from __future__ import annotations

import numpy as np
from prometheus_client.samples import Sample

from services.inference import statistics
from services.inference.model_config import Scheduling, data_type, model_config
from services.inference.repository import control_allowed
from services.inference.servable import DEFAULT_SIGNATURE, Servable, Signature
from services.inference.tensors import TensorSpec


def sample(name, value, **labels):
    return Sample(name, {"model": "m", "version": "1", **labels}, value)


def test_report_turns_summed_samples_into_triton_json():
    samples = [
        sample("modelserver_inference_stats_total", 5, stat="success"),
        sample("modelserver_inference_stats_seconds_total", 0.25, stat="success"),
        sample("modelserver_inference_stats_seconds_total", 0.001, stat="queue"),
        sample("modelserver_batch_executions_total", 2, batch_size="2"),
        sample("modelserver_batch_execution_seconds_total", 0.004, batch_size="2"),
        sample("modelserver_model_call_seconds_count", 3),
        sample("modelserver_batch_size_sum", 7),
        sample("modelserver_last_inference_timestamp_seconds", 1700000000.5),
        Sample("modelserver_inference_stats_total", {"model": "other", "version": "1", "stat": "success"}, 9),
    ]
    (stats,) = statistics.report(samples, [("m", 1)])["model_stats"]
    assert stats["name"] == "m" and stats["version"] == "1"
    assert stats["inference_stats"]["success"] == {"count": 5, "ns": 250_000_000}
    assert stats["inference_stats"]["queue"] == {"count": 5, "ns": 1_000_000}
    assert stats["inference_stats"]["fail"] == {"count": 0, "ns": 0}
    assert stats["execution_count"] == 3 and stats["inference_count"] == 7
    assert stats["last_inference"] == 1700000000500
    assert stats["batch_stats"] == [{
        "batch_size": 2, "compute_input": {"count": 2, "ns": 0},
        "compute_infer": {"count": 2, "ns": 4_000_000}, "compute_output": {"count": 2, "ns": 0},
    }]
    # A version with nothing recorded yet reports zeros, as Triton's does.
    (empty,) = statistics.report([], [("m", 2)])["model_stats"]
    assert empty["inference_count"] == 0 and empty["batch_stats"] == []


def test_config_comes_from_the_signature_whatever_the_format():
    signature = Signature(
        DEFAULT_SIGNATURE,
        inputs=(TensorSpec("text", np.dtype("<i8"), (None, None)), TensorSpec("mask", np.dtype("|b1"), (None, 4))),
        outputs=(TensorSpec("a", np.dtype("<f4"), (None, 2)), TensorSpec("b", np.dtype("<f8"), (None,))),
        call=None,
    )
    servable = Servable(
        name="two", version=3, signatures={DEFAULT_SIGNATURE: signature},
        platform="tensorflow_savedmodel", model_file="model.savedmodel",
    )
    config = model_config("two", servable, Scheduling(16, 2.5, None, 3))
    assert config["platform"] == "tensorflow_savedmodel" and config["default_model_filename"] == "model.savedmodel"
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("text", "TYPE_INT64", [-1]), ("mask", "TYPE_BOOL", [4])]
    assert [(o["name"], o["dims"], o["label_filename"]) for o in config["output"]] == [("a", [2], ""), ("b", [], "")]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2500
    assert config["version_policy"] == {"all": {}} and config["instance_group"][0]["count"] == 3
    assert data_type("BYTES") == "TYPE_STRING"


def test_who_may_load_and_unload():
    assert control_allowed("on", "10.1.2.3")
    assert control_allowed("loopback", "127.0.0.1") and control_allowed("loopback", "::1")
    assert not control_allowed("loopback", "10.1.2.3") and not control_allowed("loopback", None)
    assert not control_allowed("loopback", "not-an-address")
    assert not control_allowed("off", "127.0.0.1")
