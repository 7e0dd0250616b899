"""Natural numbers from untrusted text (versions in paths and directory names, header
lengths), parsed in one place.

``str.isdigit()`` alone is not enough: it is true for "²" and "١", which ``int()`` refuses or
reads as another number, and ``int()`` refuses strings of more than 4,300 digits. Both used to
turn a client's bad version into a 500 (found by fuzzing).
"""

from __future__ import annotations

MAX_DIGITS = 18  # fits an int64 (TF Serving's versions); no body or header is longer


def parse(text: str) -> int | None:
    """The number ``text`` spells in ASCII digits (at most MAX_DIGITS of them), else None."""
    if not (0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        return None
    return int(text)
