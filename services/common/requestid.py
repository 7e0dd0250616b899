"""Request ids: accepted from the client when they are safe to echo and log, made up otherwise."""

from __future__ import annotations

import re
import uuid

HEADER = "X-Request-ID"
_SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def accept_or_generate(value: str | None) -> str:
    # A client-supplied id ends up in response headers and log lines: anything outside a
    # conservative alphabet (CR/LF above all) would allow header or log injection.
    if value and _SAFE.fullmatch(value):
        return value
    return uuid.uuid4().hex
