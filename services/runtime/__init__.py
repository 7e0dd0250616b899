"""The Gunicorn runtime both services run on: the draining worker, request buffering, the
connection spread over workers, admission at the front door, the wire format of Gunicorn's own
errors, and the shared server configuration and hooks."""
