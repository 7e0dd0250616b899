"""HTTP routes: the blueprint, its per-request plumbing, and the views of each protocol
(``routes_health``, ``routes_tfs``, ``routes_v2``), thin adapters to the store, the protocols
and the batcher. What a model call does whatever its transport is in ``calls``."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from services.common import requestid, tracing
from services.common.errors import Overloaded, report
from services.inference import calls, routes_health, routes_tfs, routes_v2
from services.inference.calls import Accounting
from services.inference.config import InferenceSettings
from services.inference.http_requests import Views
from services.inference.metrics import InferenceMetrics
from services.inference.model_store import ModelStore
from services.inference.repository import Repository
from services.inference.serving import ServedVersion
from services.runtime import frontdoor, lifecycle

_INFER_ENDPOINTS = {"inference.tfs_predict": "tfs", "inference.v2_infer": "v2"}


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
    admission: frontdoor.Admission, repo: Repository, *, grpc_port: int | None = None,
) -> Blueprint:
    """The service's HTTP blueprint; ``grpc_port``: the gRPC server's, named by /readyz."""
    bp = Blueprint("inference", __name__)
    accounting = Accounting(store, m, admission)
    budget = settings.queue_budget_ms / 1000
    calls.ACCESS.enable(settings.access_log)

    @bp.before_app_request
    def _start() -> None:
        g.request_id = requestid.accept_or_generate(request.headers.get(requestid.HEADER))
        protocol = _INFER_ENDPOINTS.get(request.endpoint or "")
        if protocol is not None:
            g.call = accounting.begin(
                protocol, (request.view_args or {}).get("name", ""), g.request_id,
                tracing.incoming(request.environ), method=request.method, path=request.path,
                arrived=lifecycle.arrived(),
            )
            calls.refuse_if_waited_too_long(lifecycle.arrived(), budget)

    @bp.app_errorhandler(Overloaded)
    def _shed(error: Overloaded) -> Response:
        call = g.get("call")
        if call is not None:
            call.shed = True  # a 503 of admission control, not one of a model still loading
        return report(error)

    @bp.after_app_request
    def _finish(response: Response) -> Response:
        response.headers[requestid.HEADER] = g.get("request_id", "")
        call = g.get("call")
        if call is not None:
            call.version = g.get("version", "")
            accounting.finish(call, response.status_code, method=request.method, path=request.path)
        return response

    views = Views(store, settings, repo)
    routes_health.register(bp, views, grpc_port)
    routes_tfs.register(bp, views)
    routes_v2.register(bp, views)
    return bp
