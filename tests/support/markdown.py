"""Markdown as GitHub renders it, as far as links need: heading anchors and relative links.

Enough of GitHub's rules to check our own docs, not a Markdown parser: fenced blocks and code
spans hold no links or headings; a heading's anchor is its text, lower-cased, with everything
but letters, digits, spaces, ``-`` and ``_`` dropped and spaces made hyphens (the second of two
equal anchors gets ``-1``, the next ``-2``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


@dataclass(frozen=True)
class Link:
    line: int  # 1-based
    target: str  # as written: "docs/x.md#y", "#y", "https://..."


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, with their numbers."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading's text (before de-duplication)."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' (de-duplicated as GitHub does) and HTML ones."""
    found: set[str] = set()
    seen: Counter[str] = Counter()
    for _, line in _prose_lines(text):
        found.update(_HTML_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
    return found


def links(text: str) -> list[Link]:
    """Every inline link and image target outside code."""
    return [Link(number, match.group(1)) for number, line in _prose_lines(text)
            for match in _LINK.finditer(_CODE_SPAN.sub("", line))]
