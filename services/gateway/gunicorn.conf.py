"""Gunicorn settings for the gateway, all taken from GatewaySettings."""

from services.common import metrics
from services.gateway import ratelimit
from services.gateway.config import load_settings
from services.runtime import lifecycle
from services.runtime.gunicorn_config import common
from services.runtime.gunicorn_hooks import child_exit  # noqa: F401

# I/O-bound: a thread per in-flight request waits on its replica with the GIL released; measured
# against gevent in docs/architecture.md ("Gateway"). The app (and so the routes file) is built
# in each worker, so SIGHUP, which replaces the workers, reloads the routes.
_settings = load_settings()
globals().update(common(_settings, app="services.gateway.app:create_app()",
                        name="modelserver-gateway"))


def on_starting(server: object) -> None:
    metrics.prepare_multiprocess_dir()
    lifecycle.forget_drain_file(_settings.drain_file)
    ratelimit.prepare_shared_file()  # before any fork: every worker shares one set of buckets


def on_exit(server: object) -> None:
    ratelimit.remove_shared_file()
