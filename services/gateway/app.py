"""The gateway's app factory: Gunicorn calls it in each worker, after the fork."""

from __future__ import annotations

import logging

from flask import Flask
from gunicorn.arbiter import Arbiter

from services.common import logs, periodic, tracing
from services.common.docs_page import docs_blueprint
from services.common.errors import register_error_handlers
from services.gateway import access_log, grpc_front, openapi, views
from services.gateway.auth import Authenticator
from services.gateway.config import GatewaySettings, load_settings
from services.gateway.metrics import GatewayMetrics, metrics
from services.gateway.pipeline import Gateway
from services.gateway.probes import Prober
from services.gateway.proxy import Forwarder
from services.gateway.ratelimit import RateLimiter
from services.gateway.routes_file import RoutesFileError
from services.gateway.routing import Router
from services.gateway.upstream import BackendRegistry
from services.runtime import frontdoor, lifecycle

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings | None = None) -> Flask:
    """Read routes and keys (a bad file stops the worker from booting), probe every replica
    once so the first request already knows which are up, then start the background chores."""
    settings = settings or load_settings()
    logs.configure(settings.log_level)
    tracing.install("modelserver-gateway")
    lifecycle.watch_drain_file(settings.drain_file)
    access_log.enable(settings.access_log)
    m = metrics()

    prober = Prober(timeout=min(1.0, settings.health_interval * 2))
    # One pooled connection per worker thread and replica; a drained replica's pool closes
    # once the longest request that might still use it is over.
    registry = BackendRegistry(pool_size=settings.threads, close_after=settings.max_request_timeout + 1)
    router = Router(settings.routes_file, registry, probe=prober.probe)
    try:
        router.load()
    except RoutesFileError as error:
        # The message names the file and the field; a traceback would only bury it. Gunicorn's
        # "app failed to load" status stops the master instead of respawning workers that fail alike.
        log.error("cannot start: %s", error)
        raise SystemExit(Arbiter.APP_LOAD_ERROR) from None
    auth = Authenticator(settings.api_keys, settings.api_keys_file)
    admin = Authenticator(settings.admin_keys, settings.admin_keys_file)
    limiter = RateLimiter(settings.rate_limit, settings.burst) if settings.rate_limit > 0 else None
    forwarder = Forwarder(settings.connect_timeout, m)

    m.publish_readiness(router.readiness()[1])

    def probe() -> None:
        prober.probe(router.backends())
        m.publish_readiness(router.readiness()[1])

    periodic.every(settings.health_interval, probe, "probe")
    periodic.every(settings.dns_refresh, router.refresh_addresses, "dns")
    if settings.routes_poll > 0:
        periodic.every(settings.routes_poll, lambda: watch_files(router, auth, admin, m), "watch")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    register_error_handlers(app)
    app.register_blueprint(views.build(router, forwarder, status_page=settings.status_page))
    app.register_blueprint(docs_blueprint(lambda: openapi.build_document(auth.enabled), openapi.TITLE))
    # Every request passes the gateway's WSGI layer first; model calls end there.
    gateway = Gateway(app.wsgi_app, router, auth, limiter, forwarder, settings, m, admin)
    app.wsgi_app = gateway  # type: ignore[method-assign]
    frontdoor.install(gateway.admission)  # the worker refuses what would not be served in time
    if settings.grpc_bind:  # after the fork: gRPC's threads and sockets must not cross one
        app.extensions["grpc_server"] = grpc_front.serve(grpc_front.GrpcFront(
            router, auth, limiter, settings, m, ready=lambda: views.gateway_readiness(router)[0],
        ), settings)
    log.info("gateway worker ready", extra={"fields": {
        "routes": router.describe(), "auth": auth.enabled, "admin": admin.enabled,
        "rate_limit": settings.rate_limit, "grpc": settings.grpc_bind or "off",
    }})
    return app


def watch_files(router: Router, auth: Authenticator, admin: Authenticator, m: GatewayMetrics) -> None:
    for name, changed in (
        ("routes", router.reload_if_changed), ("api_keys", auth.reload_if_changed),
        ("admin_keys", admin.reload_if_changed),
    ):
        outcome = changed()
        if outcome is not None:
            m.reloads.labels(name, "applied" if outcome else "rejected").inc()
