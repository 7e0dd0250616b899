"""Gunicorn settings for the inference service, all taken from InferenceSettings."""

from services.inference.config import load_settings
from services.runtime import gunicorn_hooks, lifecycle
from services.runtime.gunicorn_config import common
from services.runtime.gunicorn_hooks import child_exit  # noqa: F401

_settings = load_settings()
# gthread: a thread per in-flight request is what lets concurrent requests meet in one batch,
# and unlike sync workers it honours keep-alive behind nginx.
globals().update(common(_settings, app="services.inference.app:create_app()",
                        name="modelserver-inference"))


def on_starting(server: object) -> None:
    gunicorn_hooks.on_starting(server)
    lifecycle.forget_drain_file(_settings.drain_file)
