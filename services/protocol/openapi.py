"""OpenAPI 3 pieces both services document alike: the wire formats' schemas and builders.

Each service builds its own document (``services/<service>/openapi.py``) from these schemas,
because both speak the same wire formats: the TensorFlow Serving REST API and the Open
Inference Protocol (V2). :mod:`services.common.docs_page` serves it. Tests compare each
document with the service's real routes, so neither can drift alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from services.protocol import facts
from services.protocol.facts import HEADER_LENGTH

OPENAPI_VERSION = "3.0.3"
ASSETS_PREFIX = "/docs/assets"

Schema = dict[str, Any]
Operation = dict[str, Any]

# -- schemas ---------------------------------------------------------------------------------

ERROR: Schema = {
    "type": "object",
    "description": "Every failure, from either service or nginx: TF Serving's and V2's error body.",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}
_B64: Schema = {
    "type": "object", "required": ["b64"], "additionalProperties": False,
    "properties": {"b64": {"type": "string", "description": "Base64 bytes of a string tensor element."}},
}
_SCALAR: Schema = {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}, _B64]}
_NUMBERS: Schema = {
    "description": "A number, a boolean, a string (string tensors; TF Serving also takes "
    '`{"b64": ...}`), or nested lists of them (batch first).',
    "anyOf": [
        _SCALAR,
        {"type": "array", "items": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}},
    ],
}
TFS_PREDICT_REQUEST: Schema = {
    "type": "object",
    "description": "Row format (`instances`) or columnar format (`inputs`), exactly one of them.",
    "properties": {
        "signature_name": {"type": "string", "default": "serving_default"},
        "instances": {
            "type": "array", "minItems": 1,
            "description": "One element per example: a tensor, or an object keyed by input name.",
            "items": {"anyOf": [_NUMBERS, {"type": "object", "additionalProperties": _NUMBERS}]},
        },
        "inputs": {
            "description": "A batch tensor, or an object of batch tensors keyed by input name.",
            "oneOf": [{"type": "object", "additionalProperties": _NUMBERS}, {"type": "array"}],
        },
        "model_spec": {
            "type": "object", "additionalProperties": False,
            "description": "gRPC's ModelSpec: pins a version or a version label when the path does not.",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                           "version_label": {"type": "string"}},
        },
    },
}
TFS_PREDICT_RESPONSE: Schema = {
    "type": "object",
    "description": "`predictions` for the row format, `outputs` for the columnar one.",
    "properties": {
        "predictions": {"type": "array"},
        "outputs": {"oneOf": [{"type": "array"}, {"type": "object"}]},
    },
}
TFS_STATUS_RESPONSE: Schema = {
    "type": "object",
    "required": ["model_version_status"],
    "description": "TF Serving's status; `name` and `ready` are KServe V1's model-ready answer.",
    "properties": {
        "name": {"type": "string"},
        "ready": {"type": "boolean"},
        "model_version_status": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["version", "state", "status"],
                "properties": {
                    "version": {"type": "string"},
                    "state": {"type": "string", "enum": list(facts.TFS_STATES)},
                    "status": {
                        "type": "object",
                        "required": ["error_code", "error_message"],
                        "properties": {
                            "error_code": {"type": "string"},
                            "error_message": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
TFS_METADATA_RESPONSE: Schema = {
    "type": "object",
    "required": ["model_spec", "metadata"],
    "properties": {
        "model_spec": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "signature_name": {"type": "string"},
                "version": {"type": "string"},
            },
        },
        "metadata": {
            "type": "object",
            "description": "`signature_def.signature_def.<signature>` for every signature the model "
            "records (the nesting is TF Serving's).",
        },
    },
}
DATATYPES = list(facts.DATATYPES)
_SHAPE: Schema = {"type": "array", "items": {"type": "integer", "minimum": 0}}
V2_INPUT_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": _SHAPE,
        "datatype": {"type": "string", "enum": DATATYPES},
        "data": {**_NUMBERS, "description": "Flat or nested, row-major; absent with binary data."},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
    },
}
V2_INFER_REQUEST: Schema = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "items": V2_INPUT_TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                },
            },
        },
        "parameters": {"type": "object", "properties": {
            "binary_data_output": {"type": "boolean"},
            "signature_name": {"type": "string", "description": "A SavedModel signature other than serving_default."},
        }},
    },
}
V2_INFER_RESPONSE: Schema = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": _SHAPE,
                    "datatype": {"type": "string", "enum": DATATYPES},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
            },
        },
    },
}
_V2_TENSOR_METADATA: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
    },
}
V2_MODEL_METADATA: Schema = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _V2_TENSOR_METADATA},
        "outputs": {"type": "array", "items": _V2_TENSOR_METADATA},
    },
}
_V2_CONFIG_TENSOR: Schema = {
    "type": "object", "required": ["name", "data_type", "dims"],
    "properties": {
        "name": {"type": "string"},
        "data_type": {"type": "string", "description": "Triton's DataType, e.g. TYPE_FP32."},
        "dims": {"type": "array", "items": {"type": "integer", "minimum": -1},
                 "description": "Without the batch dimension (max_batch_size > 0)."},
    },
}
V2_MODEL_CONFIG: Schema = {
    "type": "object",
    "description": "Triton's ModelConfig as JSON (model_config.proto's field names).",
    "required": ["name", "platform", "max_batch_size", "input", "output"],
    "properties": {
        "name": {"type": "string"},
        "platform": {"type": "string"},
        "backend": {"type": "string"},
        "max_batch_size": {"type": "integer", "minimum": 0},
        "version_policy": {"type": "object"},
        "input": {"type": "array", "items": _V2_CONFIG_TENSOR},
        "output": {"type": "array", "items": _V2_CONFIG_TENSOR},
        "dynamic_batching": {
            "type": "object",
            "properties": {
                "preferred_batch_size": {"type": "array", "items": {"type": "integer"}},
                "max_queue_delay_microseconds": {"type": "integer", "minimum": 0},
            },
        },
    },
}
_DURATION: Schema = {
    "type": "object", "required": ["count", "ns"],
    "properties": {"count": {"type": "integer", "minimum": 0}, "ns": {"type": "integer", "minimum": 0}},
}
_STAT_NAMES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
V2_STATISTICS: Schema = {
    "type": "object", "required": ["model_stats"],
    "description": "Triton's statistics extension: counts and nanoseconds since the server started, "
                   "summed over its worker processes (through the gateway: over the replicas).",
    "properties": {"model_stats": {"type": "array", "items": {
        "type": "object",
        "required": ["name", "version", "last_inference", "inference_count", "execution_count",
                     "inference_stats", "batch_stats"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "last_inference": {"type": "integer", "description": "Milliseconds since the epoch."},
            "inference_count": {"type": "integer"},
            "execution_count": {"type": "integer"},
            "inference_stats": {"type": "object", "required": list(_STAT_NAMES),
                                "properties": {name: _DURATION for name in _STAT_NAMES}},
            "batch_stats": {"type": "array", "items": {"type": "object", "required": ["batch_size"]}},
        },
    }}},
}
V2_SERVER_METADATA: Schema = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
V2_MODEL_READY: Schema = {
    "type": "object", "required": ["ready"],
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
}
STATUS: Schema = {
    "type": "object", "required": ["status"],
    "properties": {
        "status": {"type": "string"},
        "models": {"type": "object"},
        "errors": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Inference: what the model store cannot read, by model ('' = the model root)."},
    },
}

# -- operations --------------------------------------------------------------------------------

_ERRORS = {
    "400": "Malformed request: bad JSON, wrong shape, dtype or values.",
    "401": "Missing or wrong API key (gateway with keys configured).",
    "403": "Model control is switched off here, or the caller may not use it.",
    "404": "Unknown model, version or path.",
    "405": "Method not allowed on this path.",
    "413": "Body over the size limit.",
    "415": "Content-Type or Content-Encoding not accepted.",
    "429": "Rate limit exceeded; see Retry-After.",
    "502": "No replica could answer (gateway).",
    "503": "Not ready, draining, or load shed; see Retry-After.",
    "504": "The request's deadline passed.",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def responses(ok: Schema | None, ok_description: str, errors: Iterable[int]) -> dict[str, Any]:
    """A 200 with ``ok`` (None: any JSON), plus each error status with the error body."""
    result: dict[str, Any] = {"200": {"description": ok_description, "content": json_content(ok or {})}}
    for status in sorted(errors):
        entry: dict[str, Any] = {"description": _ERRORS[str(status)], "content": json_content(ERROR)}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        result[str(status)] = entry
    return result


def path_parameters(template: str) -> list[dict[str, Any]]:
    """The ``{name}``/``{version}`` parameters an OpenAPI path template declares."""
    described = {
        "name": "Model name.",
        "version": "Model version: a positive integer (TF Serving's layout).",
        "label": "Version label (TF Serving's `version_labels` in the model config file).",
    }
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
         "description": described.get(name, ""), **({"example": "digits"} if name == "name" else {})}
        for name in re.findall(r"{(\w+)}", template)
    ]


def operation(
    summary: str, tag: str, template: str, ok: Schema | None = None, *,
    ok_description: str = "OK", errors: Iterable[int] = (), body: dict[str, Any] | None = None,
    headers: Iterable[dict[str, Any]] = (),
) -> Operation:
    op: Operation = {
        "summary": summary,
        "tags": [tag],
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{tag} {summary}").strip("_").lower(),
        "parameters": [*path_parameters(template), *headers],
        "responses": responses(ok, ok_description, errors),
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if not op["parameters"]:
        del op["parameters"]
    return op


REQUEST_ID_HEADER = {
    "name": "X-Request-ID", "in": "header", "required": False,
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:\-]{1,128}$"},
    "description": "Echoed back; anything else is replaced by a generated id.",
}
TIMEOUT_HEADER = {
    "name": "X-Request-Timeout", "in": "header", "required": False,
    "schema": {"type": "string"}, "description": "Seconds the caller will wait (capped).",
}


# -- the model calls both services serve -------------------------------------------------------

TFS_TAG, V2_TAG, OPS_TAG = "TensorFlow Serving REST", "Open Inference Protocol (V2)", "Operations"
_V2_BINARY_HEADER = {
    "name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "string"},
    "description": "Length of the JSON header when binary tensors follow it.",
}
_V2_BODY = {
    **json_content(V2_INFER_REQUEST),
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
}
# (template, method, summary, tag, 200 schema, errors, request body, extra headers)
_MODEL_CALLS: tuple[tuple[str, str, str, str, Schema, tuple[int, ...], Any, tuple[Any, ...]], ...] = (
    ("/v1/models/{name}", "get", "Version status", TFS_TAG, TFS_STATUS_RESPONSE, (404,), None, ()),
    ("/v1/models/{name}/versions/{version}", "get", "Status of one version", TFS_TAG,
     TFS_STATUS_RESPONSE, (404,), None, ()),
    ("/v1/models/{name}/metadata", "get", "Signature of the default version", TFS_TAG,
     TFS_METADATA_RESPONSE, (404, 503), None, ()),
    ("/v1/models/{name}/versions/{version}/metadata", "get", "Signature of one version", TFS_TAG,
     TFS_METADATA_RESPONSE, (404, 503), None, ()),
    ("/v1/models/{name}:predict", "post", "Predict with the default version", TFS_TAG,
     TFS_PREDICT_RESPONSE, (400, 404, 413, 415, 503, 504), json_content(TFS_PREDICT_REQUEST), ()),
    ("/v1/models/{name}/versions/{version}:predict", "post", "Predict with one version", TFS_TAG,
     TFS_PREDICT_RESPONSE, (400, 404, 413, 415, 503, 504), json_content(TFS_PREDICT_REQUEST), ()),
    ("/v1/models/{name}/labels/{label}", "get", "Status of the labelled version", TFS_TAG,
     TFS_STATUS_RESPONSE, (404,), None, ()),
    ("/v1/models/{name}/labels/{label}/metadata", "get", "Signature of the labelled version", TFS_TAG,
     TFS_METADATA_RESPONSE, (404, 503), None, ()),
    ("/v1/models/{name}/labels/{label}:predict", "post", "Predict with the labelled version", TFS_TAG,
     TFS_PREDICT_RESPONSE, (400, 404, 413, 415, 503, 504), json_content(TFS_PREDICT_REQUEST), ()),
    ("/v2/models/{name}", "get", "Model metadata", V2_TAG, V2_MODEL_METADATA, (404, 503), None, ()),
    ("/v2/models/{name}/versions/{version}", "get", "Metadata of one version", V2_TAG,
     V2_MODEL_METADATA, (404, 503), None, ()),
    ("/v2/models/{name}/ready", "get", "Model is ready", V2_TAG, V2_MODEL_READY, (404, 503), None, ()),
    ("/v2/models/{name}/versions/{version}/ready", "get", "Version is ready", V2_TAG, V2_MODEL_READY,
     (404, 503), None, ()),
    ("/v2/models/{name}/config", "get", "Model configuration (Triton's)", V2_TAG, V2_MODEL_CONFIG,
     (404, 503), None, ()),
    ("/v2/models/{name}/versions/{version}/config", "get", "Configuration of one version", V2_TAG,
     V2_MODEL_CONFIG, (404, 503), None, ()),
    ("/v2/models/{name}/stats", "get", "Statistics of every loaded version", V2_TAG, V2_STATISTICS,
     (404,), None, ()),
    ("/v2/models/{name}/versions/{version}/stats", "get", "Statistics of one version", V2_TAG,
     V2_STATISTICS, (404,), None, ()),
    ("/v2/models/{name}/infer", "post", "Infer with the default version", V2_TAG, V2_INFER_RESPONSE,
     (400, 404, 413, 415, 503, 504), _V2_BODY, (_V2_BINARY_HEADER,)),
    ("/v2/models/{name}/versions/{version}/infer", "post", "Infer with one version", V2_TAG,
     V2_INFER_RESPONSE, (400, 404, 413, 415, 503, 504), _V2_BODY, (_V2_BINARY_HEADER,)),
)


def model_calls(extra_errors: tuple[int, ...] = ()) -> dict[str, dict[str, Operation]]:
    """The TF Serving and V2 model paths, as both services serve them (the gateway forwards
    them and adds its own errors: ``extra_errors``)."""
    paths: dict[str, dict[str, Operation]] = {}
    for template, method, summary, tag, ok, errors, body, headers in _MODEL_CALLS:
        post = method == "post"
        paths[template] = {method: operation(
            summary, tag, template, ok, errors=(*errors, *extra_errors), body=body,
            headers=(REQUEST_ID_HEADER, *((TIMEOUT_HEADER,) if post else ()), *headers),
        )}
    return paths


V2_REPOSITORY_INDEX: Schema = {
    "type": "array",
    "items": {
        "type": "object", "required": ["name", "state"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]},
            "reason": {"type": "string"},
        },
    },
}
_REPOSITORY_BODY = json_content({
    "type": "object", "properties": {"parameters": {"type": "object"}},
    "description": "Optional (an empty body is fine); Triton's `config` parameter is refused.",
})


def repository_index(extra_errors: tuple[int, ...] = ()) -> dict[str, dict[str, Operation]]:
    template = "/v2/repository/index"
    op = operation("Repository index: every model and version, and its state", V2_TAG, template,
                   V2_REPOSITORY_INDEX, errors=(400, 415, *extra_errors), body=json_content({
                       "type": "object", "properties": {"ready": {"type": "boolean"}}}))
    op["requestBody"]["required"] = False
    return {template: {"post": op}}


def repository_control(extra_errors: tuple[int, ...] = ()) -> dict[str, dict[str, Operation]]:
    """Triton's load and unload: admin calls (403 where they are switched off)."""
    paths: dict[str, dict[str, Operation]] = {}
    for action, summary in (("load", "Load (or reload) a model in every worker"),
                            ("unload", "Unload a model from every worker")):
        template = f"/v2/repository/models/{{name}}/{action}"
        op = operation(summary, V2_TAG, template, {"type": "object"},
                       errors=(400, 403, 404, 415, 503, *extra_errors), body=_REPOSITORY_BODY)
        op["requestBody"]["required"] = False
        paths[template] = {"post": op}
    return paths


def simple_get(summary: str, template: str, ok: Schema | None, errors: tuple[int, ...] = (),
               *, tag: str = OPS_TAG, media_type: str = "application/json") -> dict[str, Operation]:
    """A GET without a body; ``media_type`` for what is not JSON (metrics, the docs page)."""
    op = operation(summary, tag, template, ok, errors=errors)
    if media_type != "application/json":
        op["responses"]["200"]["content"] = {media_type: {"schema": {"type": "string"}}}
    return {"get": op}


def docs_paths() -> dict[str, dict[str, Operation]]:
    return {
        "/openapi.json": simple_get("This document", "/openapi.json", {"type": "object"}),
        "/docs": simple_get("API reference page (Swagger UI)", "/docs", None, media_type="text/html"),
    }


def document(title: str, version: str, description: str, paths: dict[str, dict[str, Operation]],
             *, security: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}},
    }
    if security:
        doc["components"]["securitySchemes"] = security
    return doc


def flask_template(rule: str) -> str:
    """``/v1/models/<name>:predict`` -> ``/v1/models/{name}:predict``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
