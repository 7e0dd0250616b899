"""Triton's model configuration extension: ``GET /v2/models/<m>[/versions/<v>]/config``.

The JSON form of Triton's ``ModelConfig`` message (model_config.proto, field names as the proto
spells them), built from what a servable's signature says -- any number of named inputs and
outputs, whatever format it was loaded from -- and from the batcher's settings, which is what
Triton's tools read: ``perf_analyzer`` takes ``max_batch_size`` and the scheduler from here and
the tensors from the V2 metadata. Integers are JSON numbers, as Triton's HTTP endpoint sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.inference.servable import Servable
    from services.inference.tensors import TensorSpec

BACKEND = "tensorflow"


@dataclass(frozen=True)
class Scheduling:
    """The settings that shape how requests reach the model, as Triton would describe them."""

    max_batch_size: int
    max_queue_delay_ms: float
    kept_versions: int | None  # None: every version (policy "all")
    workers: int  # model instances: one per worker process
    specific_versions: frozenset[int] | None = None  # the model config file's `specific` policy


def data_type(datatype: str) -> str:
    """V2 datatype -> Triton's DataType enum name (``FP32`` -> ``TYPE_FP32``; BYTES is STRING)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def _dims(spec: TensorSpec) -> list[int]:
    # Every servable tensor has a batch dimension, and max_batch_size > 0 says so: Triton then
    # leaves it out of dims.
    return [-1 if dim is None else dim for dim in spec.shape[1:]]


def model_config(name: str, servable: Servable, scheduling: Scheduling) -> dict[str, Any]:
    policy: dict[str, Any] = (
        {"specific": {"versions": sorted(scheduling.specific_versions)}} if scheduling.specific_versions
        else {"all": {}} if scheduling.kept_versions is None
        else {"latest": {"num_versions": scheduling.kept_versions}}
    )
    inputs = [
        {
            "name": spec.name, "data_type": data_type(spec.datatype), "format": "FORMAT_NONE",
            "dims": _dims(spec), "is_shape_tensor": False, "allow_ragged_batch": False,
            "optional": False,
        }
        for spec in servable.inputs
    ]
    outputs = [
        {
            "name": spec.name, "data_type": data_type(spec.datatype), "dims": _dims(spec),
            # Triton names the file of class labels; ours is per version, beside the model.
            "label_filename": "labels.txt" if servable.labels and index == 0 else "",
            "is_shape_tensor": False,
        }
        for index, spec in enumerate(servable.outputs)
    ]
    return {
        "name": name,
        "platform": servable.platform,
        "backend": BACKEND,
        "version_policy": policy,
        "max_batch_size": scheduling.max_batch_size,
        "input": inputs,
        "output": outputs,
        "batch_input": [],
        "batch_output": [],
        # Ours merges whatever is queued, up to max_batch_size: that is the size it prefers.
        "dynamic_batching": {
            "preferred_batch_size": [scheduling.max_batch_size],
            "max_queue_delay_microseconds": round(scheduling.max_queue_delay_ms * 1000),
            "preserve_ordering": False,
        },
        "instance_group": [
            {"name": name, "kind": "KIND_CPU", "count": scheduling.workers, "gpus": []},
        ],
        "default_model_filename": servable.model_file,
        "parameters": {},
        "model_warmup": [],
    }
