"""Protocol facts both services state and must state alike: names, states, datatypes, paths.

Each used to be written down in two or three modules (the gateway's path table allowed model
names the store and the routes file refuse); here is the one definition.
"""

from __future__ import annotations

import re

# A model name: a directory under the model root, a key of the routes file, a path segment.
# The same text embeds in larger patterns (the gateway's path table); match names with MODEL_NAME.
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
# A version label (TF Serving's ``version_labels`` key): a path segment of
# ``/v1/models/<name>/labels/<label>``, a key of the routes file's ``labels:``.
VERSION_LABEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
VERSION_LABEL = re.compile(VERSION_LABEL_PATTERN)

# TensorFlow Serving's ModelVersionStatus states, as its REST status API spells them.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"
TFS_STATES = (LOADING, AVAILABLE, END)

# Open Inference Protocol datatype -> (its binary layout as a NumPy type string: little-endian,
# BOOL one byte, BYTES Python objects (bytes) as TF hands strings over; TensorFlow's DataType
# name, which TF Serving's metadata shows).
DATATYPES: dict[str, tuple[str, str]] = {
    "BOOL": ("|b1", "DT_BOOL"),
    "UINT8": ("<u1", "DT_UINT8"),
    "UINT16": ("<u2", "DT_UINT16"),
    "UINT32": ("<u4", "DT_UINT32"),
    "UINT64": ("<u8", "DT_UINT64"),
    "INT8": ("<i1", "DT_INT8"),
    "INT16": ("<i2", "DT_INT16"),
    "INT32": ("<i4", "DT_INT32"),
    "INT64": ("<i8", "DT_INT64"),
    "FP16": ("<f2", "DT_HALF"),
    "FP32": ("<f4", "DT_FLOAT"),
    "FP64": ("<f8", "DT_DOUBLE"),
    "BYTES": ("|O", "DT_STRING"),
}

# Open Inference Protocol extensions both services implement, and the binary one's header:
# the length of the JSON part of a body whose binary tensors follow it.
EXTENSIONS = ("binary_tensor_data", "model_configuration", "statistics", "model_repository")
HEADER_LENGTH = "Inference-Header-Content-Length"

# Probes and scrapers: open to anyone (they carry no keys), logged at debug, not counted.
HEALTH_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
# The gateway's live status page, its script and its data: read-only, open like the health
# paths when the operator turns it on (GATEWAY_STATUS_PAGE), 404 otherwise; never counted.
STATUS_PATHS = frozenset({"/status", "/status.js", "/status.json"})
# Open even with API keys configured: the health paths, the API reference (SECURITY.md) and
# the status page.
OPEN_PATHS = HEALTH_PATHS | STATUS_PATHS | {"/openapi.json", "/docs"}

# The Open Inference Protocol's gRPC ``InferTensorContents`` field that carries a datatype's
# typed values; FP16 has none (raw contents only). Unsigned types below 64 bits share
# ``uint_contents``, signed ones ``int_contents``.
GRPC_CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
