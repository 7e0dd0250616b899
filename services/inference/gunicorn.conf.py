"""Gunicorn settings for the inference service, all taken from InferenceSettings."""

from services.common.gunicorn_hooks import child_exit, on_starting  # noqa: F401
from services.inference.config import load_settings

_settings = load_settings()

wsgi_app = "services.inference.app:create_app()"
bind = _settings.bind
workers = _settings.workers
# gthread: a thread per in-flight request is what lets concurrent requests meet in one batch,
# and unlike sync workers it honours keep-alive behind nginx. Ours also drains on SIGTERM.
worker_class = "services.common.workers.DrainingThreadWorker"
threads = _settings.threads
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# TensorFlow is not fork-safe: every worker loads its models after the fork, never the master.
preload_app = False
# The heartbeat file on a tmpfs: a disk-backed /tmp can stall it into false WORKER TIMEOUTs.
worker_tmp_dir = "/dev/shm"
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
proc_name = "modelserver-inference"
