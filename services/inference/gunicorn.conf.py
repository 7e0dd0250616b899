"""Gunicorn settings for the inference service, all taken from InferenceSettings."""

from services.common.gunicorn_config import common
from services.common.gunicorn_hooks import child_exit, on_starting  # noqa: F401
from services.inference.config import load_settings

# gthread: a thread per in-flight request is what lets concurrent requests meet in one batch,
# and unlike sync workers it honours keep-alive behind nginx.
globals().update(common(load_settings(), app="services.inference.app:create_app()",
                        name="modelserver-inference"))
