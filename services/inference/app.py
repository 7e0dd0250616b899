"""The inference service's app factory: Gunicorn calls it in each worker, after the fork."""

from __future__ import annotations

import logging

from flask import Flask

from services.common import frontdoor, lifecycle, logs
from services.common.errors import register_error_handlers
from services.common.openapi import docs_blueprint
from services.inference import heap, openapi, routes
from services.inference.config import InferenceSettings, load_settings
from services.inference.metrics import metrics
from services.inference.model_store import Model, ModelStore
from services.inference.servable import configure_tensorflow
from services.inference.serving import ServedVersion, loader

log = logging.getLogger(__name__)


def create_app(settings: InferenceSettings | None = None) -> Flask:
    """Load every model (synchronously: a worker takes no request before its models are warm)."""
    settings = settings or load_settings()
    logs.configure(settings.log_level)
    lifecycle.watch_drain_file(settings.drain_file)
    configure_tensorflow(settings.tf_intra_op_threads())
    m = metrics()

    serving = False

    def publish(model: Model[ServedVersion]) -> None:
        for version in model.statuses:
            m.versions.labels(model.name, str(version)).set(1 if version in model.served else 0)
        if serving:  # a version came or went while serving: free its garbage, re-freeze the rest
            heap.settle()

    store: ModelStore[ServedVersion] = ModelStore(
        settings.model_root,
        loader(settings, m),
        kept_versions=settings.kept_versions,
        allow_signature_change=settings.allow_signature_change,
        on_change=publish,
    )
    store.scan(initial=True)
    heap.settle()
    serving = True
    if settings.poll_seconds > 0:
        store.start_polling(settings.poll_seconds)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["model_store"] = store
    register_error_handlers(app)
    admission = frontdoor.Admission(
        settings.queue_budget_ms / 1000, routes.is_model_call, what="inference",
        threads=settings.threads,
        on_refused=lambda refusal: routes.count_refusal(refusal, store, m),
    )
    app.register_blueprint(routes.build(store, settings, m, admission))
    frontdoor.install(admission)  # the worker refuses what would not be served in time
    app.register_blueprint(docs_blueprint(openapi.build_document, openapi.TITLE))
    log.info(
        "inference worker ready",
        extra={"fields": {"models": {n: sorted(store.model(n).served) for n in store.names()}}},
    )
    return app
