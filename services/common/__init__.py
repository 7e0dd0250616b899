"""Request plumbing both services need, written once: settings, errors, JSON, request ids,
deadlines, logging, metrics, traces, background chores. The Gunicorn runtime they run on is
:mod:`services.runtime`; what the wire protocols fix is :mod:`services.protocol`."""
