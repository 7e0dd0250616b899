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

# TensorFlow Serving's ModelVersionStatus states, as its REST status API spells them.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"
TFS_STATES = (LOADING, AVAILABLE, END)

# Open Inference Protocol datatype -> (its binary layout as a NumPy type string: little-endian,
# BOOL one byte; TensorFlow's DataType name, which TF Serving's metadata shows).
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
}

# Open Inference Protocol extensions both services implement, and the binary one's header:
# the length of the JSON part of a body whose binary tensors follow it.
EXTENSIONS = ("binary_tensor_data",)
HEADER_LENGTH = "Inference-Header-Content-Length"

# Probes and scrapers: open to anyone (they carry no keys), logged at debug, not counted.
HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
# Open even with API keys configured: the health paths and the API reference (SECURITY.md).
OPEN_PATHS = HEALTH_PATHS | {"/openapi.json", "/docs"}
