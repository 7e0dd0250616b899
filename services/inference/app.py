"""The inference service's app factory: Gunicorn calls it in each worker, after the fork."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from flask import Flask

from services.common import logs, periodic, tracing
from services.common import metrics as shared_metrics
from services.common.docs_page import docs_blueprint
from services.common.errors import register_error_handlers
from services.inference import calls, heap, openapi, repository, routes
from services.inference.config import InferenceSettings, load_settings
from services.inference.metrics import metrics
from services.inference.model_config_watch import ModelConfigWatch
from services.inference.model_store import Model, ModelStore
from services.inference.servable import configure_tensorflow
from services.inference.serving import ServedVersion, loader
from services.runtime import frontdoor, lifecycle

log = logging.getLogger(__name__)


def create_app(settings: InferenceSettings | None = None) -> Flask:
    """Load every model (synchronously: a worker takes no request before its models are warm)."""
    settings = settings or load_settings()
    logs.configure(settings.log_level)
    tracing.install("modelserver-inference")
    lifecycle.watch_drain_file(settings.drain_file)
    configure_tensorflow(settings.tf_intra_op_threads())
    m = metrics()

    serving = False

    def publish(model: Model[ServedVersion]) -> None:
        m.load_shed.labels(model.name)  # at 0 from the start: alerts and panels see the series
        for version, status in model.statuses.items():
            m.versions.labels(model.name, str(version)).set(1 if version in model.served else 0)
            m.load_failed.labels(model.name, str(version)).set(1 if status.error else 0)
        if serving:  # a version came or went while serving: free its garbage, re-freeze the rest
            heap.settle()

    marks: list[repository.Repository] = []
    store: ModelStore[ServedVersion] = ModelStore(
        settings.model_root,
        loader(settings, m),
        kept_versions=settings.kept_versions,
        allow_signature_change=settings.allow_signature_change,
        on_change=publish,
        unloaded=lambda: marks[0].unloaded() if marks else frozenset(),
    )
    repo = repository.Repository(shared_directory(), store, wait_seconds=settings.timeout)
    marks.append(repo)
    config_file = None
    if settings.model_config_file:  # TF Serving's model config file instead of the root's scan
        config_file = ModelConfigWatch(settings.model_config_file, store, m, default_kept=settings.kept_versions)
        config_file.load()
    repo.apply()  # the initial scan, honouring models a repository call left unloaded
    store.scan(initial=True)
    heap.settle()
    serving = True
    if settings.poll_seconds > 0:
        periodic.every(settings.poll_seconds, store.scan, "model scan")
    if config_file is not None and settings.model_config_poll_seconds > 0:
        periodic.every(settings.model_config_poll_seconds, config_file.reload_if_changed, "model config file")
    if settings.repository_control != "off":
        periodic.every(0.2, repo.apply, "repository changes")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["model_store"] = store
    register_error_handlers(app)
    admission = frontdoor.Admission(
        settings.queue_budget_ms / 1000, routes.is_model_call, what="inference",
        threads=settings.threads,
        on_refused=lambda refusal: routes.count_refusal(refusal, store, m),
    )
    accounting = calls.Accounting(store, m, admission)
    grpc_port = None
    if settings.grpc_bind:  # in this worker, after the fork, on the port every worker shares
        from services.inference import grpc_server

        grpc_port = grpc_server.start(settings, store, accounting, repo)
    app.register_blueprint(routes.build(store, settings, m, admission, repo, grpc_port=grpc_port))
    frontdoor.install(admission)  # the worker refuses what would not be served in time
    app.register_blueprint(docs_blueprint(openapi.build_document, openapi.TITLE))
    log.info(
        "inference worker ready",
        extra={"fields": {"models": {n: sorted(store.model(n).served) for n in store.names()}}},
    )
    return app


def shared_directory() -> Path:
    """Where the workers keep repository-control state: beside the metrics files, which the
    Gunicorn master empties at start; a private one when there is no master (tests in-process)."""
    base = os.environ.get(shared_metrics.ENV)
    return Path(base) / "repository" if base else Path(tempfile.mkdtemp(prefix="modelserver-repo-"))
