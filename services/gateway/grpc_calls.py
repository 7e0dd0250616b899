"""The gRPC methods the gateway serves, and what a call asks for: a model, a version, a label.

Forwarded, routed by model: TF Serving's ``PredictionService`` (``Predict``, ``GetModelMetadata``)
and ``ModelService`` (``GetModelStatus``), whose requests carry a ``ModelSpec`` in field 1
(``name`` 1, ``version`` 2 as a ``google.protobuf.Int64Value`` whose ``value`` is 1,
``signature_name`` 3, ``version_label`` 4); and the Open Inference Protocol's
``GRPCInferenceService`` model calls, whose requests carry ``name`` (``model_name``) in 1 and
``version`` (``model_version``) in 2. Answered by the gateway itself, as the HTTP side answers
``/v2/health/*`` and ``/v2``: ``ServerLive``, ``ServerReady``, ``ServerMetadata`` and
``grpc.health.v1.Health/Check``. The field numbers are checked against the generated
descriptors in the tests (services/gateway/tests/test_grpc_wire.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway import grpc_wire as wire
from services.gateway.grpc_wire import WireError

PREDICTION = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
V2 = "inference.GRPCInferenceService"
HEALTH = "grpc.health.v1.Health"

# TF Serving's ModelSpec, inside field 1 of its requests.
_SPEC, _NAME, _VERSION, _LABEL = 1, 1, 2, 4
_INT64_VALUE = 1  # google.protobuf.Int64Value.value
# The Open Inference Protocol's ModelInferRequest, ModelMetadataRequest, ModelReadyRequest.
_V2_NAME, _V2_VERSION = 1, 2


@dataclass(frozen=True)
class Asked:
    model: str
    version: str | None  # None: the default version (or the canary's pick)
    label: str | None


@dataclass(frozen=True)
class Method:
    path: str  # "/package.Service/Method", as gRPC names it on the wire
    tfs: bool  # TF Serving's layout (a ModelSpec); else the Open Inference Protocol's
    inference: bool  # a prediction: the canary picks its version when it pins none

    def asked(self, body: bytes) -> Asked:
        """The routing fields of a request; :class:`WireError` if they are malformed."""
        if self.tfs:
            spec = wire.message(body, _SPEC) or b""
            wrapped = wire.message(spec, _VERSION)
            version = None if wrapped is None else str(wire.integer(wrapped, _INT64_VALUE) or 0)
            return Asked(wire.string(spec, _NAME) or "", version, wire.string(spec, _LABEL) or None)
        return Asked(wire.string(body, _V2_NAME) or "", wire.string(body, _V2_VERSION) or None, None)

    def choose(self, body: bytes, version: str | None, label: str | None) -> bytes:
        """``body`` asking for ``version`` or ``label`` (the canary's pick) instead of the default;
        only that field is re-encoded, every other byte is kept."""
        if self.tfs:
            spec = wire.message(body, _SPEC) or b""
            if version is not None:
                spec = wire.replace(spec, _VERSION, wire.encode_len(
                    _VERSION, wire.encode_varint(_INT64_VALUE, int(version))))
            if label is not None:
                spec = wire.replace(spec, _LABEL, wire.encode_len(_LABEL, label.encode()))
            return wire.replace(body, _SPEC, wire.encode_len(_SPEC, spec))
        if version is None:
            return body  # the Open Inference Protocol has no labels
        return wire.replace(body, _V2_VERSION, wire.encode_len(_V2_VERSION, version.encode()))


def _methods() -> dict[str, Method]:
    listed = [
        Method(f"/{PREDICTION}/Predict", tfs=True, inference=True),
        Method(f"/{PREDICTION}/GetModelMetadata", tfs=True, inference=False),
        Method(f"/{MODEL_SERVICE}/GetModelStatus", tfs=True, inference=False),
        Method(f"/{V2}/ModelInfer", tfs=False, inference=True),
        Method(f"/{V2}/ModelMetadata", tfs=False, inference=False),
        Method(f"/{V2}/ModelReady", tfs=False, inference=False),
    ]
    return {m.path: m for m in listed}


FORWARDED = _methods()
SERVER_LIVE = f"/{V2}/ServerLive"
SERVER_READY = f"/{V2}/ServerReady"
SERVER_METADATA = f"/{V2}/ServerMetadata"
HEALTH_CHECK = f"/{HEALTH}/Check"
ANSWERED = frozenset({SERVER_LIVE, SERVER_READY, SERVER_METADATA, HEALTH_CHECK})
# Probes: open without a key, like the HTTP health paths (services/protocol/facts.py).
OPEN = frozenset({SERVER_LIVE, SERVER_READY, HEALTH_CHECK})

# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING, NOT_SERVING = 1, 2


def bool_response(value: bool) -> bytes:
    """ServerLiveResponse / ServerReadyResponse: ``live`` / ``ready`` is field 1."""
    return wire.encode_varint(1, 1) if value else b""


def health_response(serving: bool) -> bytes:
    """grpc.health.v1.HealthCheckResponse: ``status`` is field 1."""
    return wire.encode_varint(1, SERVING if serving else NOT_SERVING)


def health_service(body: bytes) -> str:
    """HealthCheckRequest.service (field 1): "" asks about the whole server."""
    return wire.string(body, 1) or ""


def server_metadata_response(name: str, version: str, extensions: list[str]) -> bytes:
    """ServerMetadataResponse: ``name`` 1, ``version`` 2, ``extensions`` 3 (repeated)."""
    return (wire.encode_len(1, name.encode()) + wire.encode_len(2, version.encode())
            + b"".join(wire.encode_len(3, e.encode()) for e in extensions))


__all__ = ["ANSWERED", "FORWARDED", "OPEN", "Asked", "Method", "WireError"]
