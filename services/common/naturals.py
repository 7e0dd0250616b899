"""Numbers from untrusted text (versions in paths and directory names, HTTP framing, the routes
file, settings), parsed in one place.

``str.isdigit()`` alone is not enough: it is true for "²" and "١", which ``int()`` refuses or
reads as another number, and ``int()`` refuses strings of more than 4,300 digits. Both used to
turn a client's bad version into a 500 (found by fuzzing). ``int()`` and ``float()`` also take
signs, spaces, underscores and non-ASCII digits, none of which a wire format means.
``services/common/tests/test_naturals.py`` keeps every other module from parsing numbers its own way.
"""

from __future__ import annotations

import math
import re

MAX_DIGITS = 18  # fits an int64 (TF Serving's versions); no body or header is longer
_HEX = re.compile(r"[0-9A-Fa-f]{1,15}")  # a chunk size; 15 hex digits still fit an int64
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def parse(text: str) -> int | None:
    """The number ``text`` spells in ASCII digits (at most MAX_DIGITS of them), else None."""
    if not (0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse_hex(text: str) -> int | None:
    """The number ``text`` spells in ASCII hex digits (an HTTP chunk size), else None.

    ``int(text, 16)`` would also take "-1", "0x10", "1_0" and spaces."""
    return int(text, 16) if _HEX.fullmatch(text) else None


def parse_int(text: str) -> int | None:
    """A whole number with an optional sign (``-3``, ``+3``, ``3``), else None."""
    sign, digits = (text[0], text[1:]) if text[:1] in ("-", "+") else ("", text)
    number = parse(digits)
    if number is None:
        return None
    return -number if sign == "-" else number


def parse_float(text: str) -> float | None:
    """A finite decimal number in ASCII (``0.5``, ``-2``, ``1e3``), else None (also for
    ``nan`` and ``inf``: no setting means them, and ``nan`` passes every comparison)."""
    if len(text) > 64 or not _FLOAT.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None
