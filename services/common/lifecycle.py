"""Process lifecycle shared by the routes and the Gunicorn worker.

A worker that has been told to stop must say "not ready" at once so load balancers stop
sending it work, while it keeps serving what it already accepted.
"""

from __future__ import annotations

import threading

draining = threading.Event()
