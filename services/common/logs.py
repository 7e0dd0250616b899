"""One JSON object per log line, so a log pipeline needs no parsing rules of ours."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from services.common.jsoncodec import dumps


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return dumps(entry).decode()


def configure(level: str = "info") -> None:
    """Send every logger to stderr as JSON; idempotent, so each worker may call it."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JSONFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLog:
    """One JSON line per request on its own logger; off, no line is even formatted."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def enable(self, on: bool) -> None:
        self._log.setLevel(logging.NOTSET if on else logging.WARNING)

    def on(self, *, quiet: bool = False) -> bool:
        """Whether a line would be written: ask before building its fields (the hot path)."""
        return self._log.isEnabledFor(logging.DEBUG if quiet else logging.INFO)

    def write(self, fields: dict[str, Any], *, quiet: bool = False) -> None:
        """``quiet``: at debug level (health checks), not to add noise."""
        self._log.log(logging.DEBUG if quiet else logging.INFO, "request", extra={"fields": fields})
