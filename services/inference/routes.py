"""HTTP routes: thin adapters from Flask requests to the store, the protocols and the batcher."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g, request

from services import __version__
from services.common import deadline, jsoncodec, lifecycle, metrics as metrics_endpoint, requestid
from services.common import frontdoor, naturals
from services.common.errors import ClientError, NotFound, Overloaded, PayloadTooLarge, Unavailable
from services.common.errors import UnsupportedMediaType, report
from services.common.jsoncodec import json_response
from services.inference import protocol_tfs, protocol_v2
from services.inference.config import InferenceSettings
from services.inference.metrics import InferenceMetrics
from services.inference.model_store import ModelStore
from services.inference.serving import ServedVersion

# Bodies that TF Serving's own examples send: curl -d (form-urlencoded) and requests without a
# content type. Anything else that is not JSON is a client mistake.
_JSON_TYPES = {"", "application/json", "application/x-www-form-urlencoded", "text/json"}
_INFER_ENDPOINTS = {"inference.tfs_predict", "inference.v2_infer"}


def is_model_call(method: str, path: str) -> bool:
    """What the front door may refuse for load: predict and infer (never health or metrics)."""
    return method == "POST" and (path.endswith(":predict") or path.endswith("/infer"))


def count_refusal(refusal: frontdoor.Refusal, store: ModelStore[ServedVersion], m: InferenceMetrics) -> None:
    """A request the worker refused as it arrived, counted like one refused here."""
    path = refusal.head.path
    protocol = "v2" if path.startswith("/v2/") else "tfs"
    parts = path.split("/")
    name = parts[3].partition(":")[0] if len(parts) > 3 else ""
    model = name if name in store.names() else "unknown"
    m.requests.labels(model, "", protocol, "503").inc()
    m.load_shed.labels(model).inc()


def build(
    store: ModelStore[ServedVersion], settings: InferenceSettings, m: InferenceMetrics,
    admission: frontdoor.Admission,
) -> Blueprint:
    bp = Blueprint("inference", __name__)
    budget = settings.queue_budget_ms / 1000

    # -- plumbing ------------------------------------------------------------------------------

    @bp.before_app_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = requestid.accept_or_generate(request.headers.get(requestid.HEADER))
        if request.endpoint in _INFER_ENDPOINTS:
            m.inflight.inc()
            # Waited longer than the whole budget for a free thread: refuse before reading the
            # body, so that shedding stays cheap and the queue behind this one drains fast.
            waited = time.monotonic() - lifecycle.arrived()
            if waited > budget:
                raise Overloaded(
                    f"overloaded: waited {waited * 1000:.0f} ms for a worker thread, over the "
                    f"{budget * 1000:.0f} ms budget; retry later",
                )

    @bp.app_errorhandler(Overloaded)
    def _shed(error: Overloaded) -> Response:
        g.shed = True  # a 503 of admission control, not one of a model still loading
        return report(error)

    @bp.after_app_request
    def _finish(response: Response) -> Response:
        response.headers[requestid.HEADER] = g.get("request_id", "")
        if request.endpoint in _INFER_ENDPOINTS:
            m.inflight.dec()
            protocol = "v2" if request.endpoint == "inference.v2_infer" else "tfs"
            name = (request.view_args or {}).get("name", "")
            version = g.get("version", "")
            model = name if name in store.names() else "unknown"  # bounded label cardinality
            m.requests.labels(model, str(version), protocol, str(response.status_code)).inc()
            m.latency.labels(model, protocol).observe(time.perf_counter() - g.started)
            if response.status_code == 200:
                admission.observe(time.monotonic() - lifecycle.arrived())  # queue included
            if g.get("shed"):
                m.load_shed.labels(model).inc()
        return response

    def lookup(name: str, version: str | None) -> tuple[int, ServedVersion]:
        wanted: int | None = None
        if version is not None:
            wanted = naturals.parse(version)
            if wanted is None:
                raise NotFound(f"model '{name}' version '{version[:40]}' not found: versions are integers")
        resolved, served = store.get(name, wanted)
        g.version = resolved
        return resolved, served

    def body(binary_ok: bool = False) -> bytes:
        mimetype = request.mimetype
        if not (
            mimetype in _JSON_TYPES
            or mimetype.endswith("+json")
            or (binary_ok and mimetype == "application/octet-stream")
        ):
            raise UnsupportedMediaType(
                f"expected Content-Type application/json{' or application/octet-stream' if binary_ok else ''}, "
                f"got {mimetype[:80]}"
            )
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]} is not supported; send identity")
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            # Chunked: Werkzeug's stream silently stops at the limit (a 10 MiB body was parsed
            # as its first 8 MiB), so read one byte past it and refuse.
            data = request.environ["wsgi.input"].read(settings.max_body_bytes + 1)
            if len(data) > settings.max_body_bytes:
                raise PayloadTooLarge("request body too large")
            return data
        return request.get_data(cache=False)

    def parse(raw: bytes) -> Any:
        try:
            return jsoncodec.loads(raw, allow_nonfinite=settings.allow_nonfinite)
        except jsoncodec.JSONDecodeError as error:
            raise ClientError(str(error)[:300]) from None

    def timeout() -> float:
        return deadline.timeout_from(
            request.headers.get(deadline.HEADER), settings.request_timeout, settings.request_timeout
        )

    # -- health and metrics --------------------------------------------------------------------

    def readiness() -> tuple[bool, str]:
        if lifecycle.is_draining():
            return False, "draining"
        if store.ready():
            return True, "ready"
        if not store.names():
            return False, f"no models found under {settings.model_root}"
        waiting = [n for n in store.names() if not store.model(n).served]
        return False, f"models not loaded yet: {waiting}"

    @bp.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @bp.get("/readyz")
    def readyz() -> Response:
        ready, reason = readiness()
        models = {n: store.model(n).default_version for n in store.names()}
        # Errors do not make it unready while every model still serves: they say what to fix.
        body = {"status": reason, "models": models, "errors": store.errors()}
        return json_response(body, 200 if ready else 503)

    @bp.get("/metrics")
    def prometheus() -> Response:
        return metrics_endpoint.metrics_response()

    # -- TensorFlow Serving REST ---------------------------------------------------------------

    @bp.get("/v1/models/<name>")
    @bp.get("/v1/models/<name>/versions/<version>")
    def tfs_status(name: str, version: str | None = None) -> Response:
        model = store.model(name)
        statuses = sorted(model.statuses.values(), key=lambda s: s.version, reverse=True)
        if version is not None:
            statuses = [s for s in statuses if str(s.version) == version]
            if not statuses:
                raise NotFound(f"model '{name}' version '{version[:40]}' not found")
        return json_response(protocol_tfs.status_response(statuses))

    @bp.get("/v1/models/<name>/metadata")
    @bp.get("/v1/models/<name>/versions/<version>/metadata")
    def tfs_metadata(name: str, version: str | None = None) -> Response:
        resolved, served = lookup(name, version)
        return json_response(protocol_tfs.metadata_response(name, resolved, served.servable))

    @bp.post("/v1/models/<name>:predict")
    @bp.post("/v1/models/<name>/versions/<version>:predict")
    def tfs_predict(name: str, version: str | None = None) -> Response:
        _, served = lookup(name, version)
        payload = parse(body())
        arrays, row_format = protocol_tfs.parse_predict(
            payload, served.servable, allow_nonfinite=settings.allow_nonfinite
        )
        results = served.batcher.submit(arrays, timeout(), lifecycle.arrived())
        return json_response(protocol_tfs.predict_response(results, served.servable, row_format))

    # -- Open Inference Protocol (V2) ----------------------------------------------------------

    @bp.get("/v2")
    def v2_server() -> Response:
        return json_response(protocol_v2.server_metadata(__version__))

    @bp.get("/v2/health/live")
    def v2_live() -> Response:
        return json_response({"live": True})

    @bp.get("/v2/health/ready")
    def v2_ready() -> Response:
        ready, _ = readiness()
        return json_response({"ready": ready}, 200 if ready else 503)

    @bp.get("/v2/models/<name>")
    @bp.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None) -> Response:
        _, served = lookup(name, version)
        versions = sorted(store.model(name).served)
        return json_response(protocol_v2.model_metadata(name, versions, served.servable))

    @bp.get("/v2/models/<name>/ready")
    @bp.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None) -> Response:
        try:
            lookup(name, version)
        except Unavailable:
            return json_response({"name": name, "ready": False}, 503)
        return json_response({"name": name, "ready": True})

    @bp.post("/v2/models/<name>/infer")
    @bp.post("/v2/models/<name>/versions/<version>/infer")
    def v2_infer(name: str, version: str | None = None) -> Response:
        resolved, served = lookup(name, version)
        header, binary = protocol_v2.split_binary(
            body(binary_ok=True), request.headers.get(protocol_v2.HEADER_LENGTH)
        )
        infer = protocol_v2.parse_infer(
            parse(header), binary, served.servable, allow_nonfinite=settings.allow_nonfinite
        )
        results = served.batcher.submit(infer.arrays, timeout(), lifecycle.arrived())
        payload, header_length = protocol_v2.infer_response(name, resolved, infer, results, served.servable)
        if header_length is None:
            return Response(payload, mimetype="application/json")
        response = Response(payload, mimetype="application/octet-stream")
        response.headers[protocol_v2.HEADER_LENGTH] = str(header_length)
        return response

    return bp
