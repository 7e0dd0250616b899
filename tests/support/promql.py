"""What a PromQL expression refers to: its series selectors and the label names it groups or
matches by, and Grafana's template variables substituted -- so that a test can ask a real
Prometheus whether each of them exists.

A lexer, not a full parser: it knows strings, range brackets, numbers with units, identifiers
and operators, which is all it takes to tell metric names from functions, keywords and labels.
Prometheus itself (``promtool check rules``, the query API) still judges the syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<number>0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?:ms|[smhdwy])?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}@])
    """,
    re.VERBOSE,
)
# Followed by a parenthesised list of label names.
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {
    "bool",
    "offset",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


class PromQLError(ValueError):
    """Text the lexer cannot read (Prometheus would refuse it too)."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


@dataclass(frozen=True)
class Selector:
    name: str  # "" for a selector with matchers only, e.g. {__name__=~"..."}
    matchers: tuple[Matcher, ...]

    def __str__(self) -> str:
        inner = ",".join(str(m) for m in self.matchers)
        return f"{self.name}{{{inner}}}" if inner or not self.name else self.name


@dataclass(frozen=True)
class References:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]  # in by/without/on/ignoring/group_left/group_right

    @property
    def metric_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.selectors if s.name)


def _tokens(expr: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"cannot read {expr[position:position + 20]!r} at {position} in {expr!r}")
        position = match.end()
        if match.lastgroup != "space":
            yield match.lastgroup or "", match.group()


def references(expr: str) -> References:
    """Every selector and grouping label of ``expr``."""
    tokens = list(_tokens(expr))
    depth = 0
    for _, text in tokens:
        depth += {"(": 1, ")": -1}.get(text, 0)
        if depth < 0:
            break
    if depth:
        raise PromQLError(f"unbalanced parentheses in {expr!r}")
    selectors: list[Selector] = []
    grouping: set[str] = set()
    index = 0

    def following(offset: int = 1) -> str:
        return tokens[index + offset][1] if index + offset < len(tokens) else ""

    while index < len(tokens):
        kind, text = tokens[index]
        if kind == "ident" and text in _LABEL_LISTS and following() == "(":
            end = _closing(tokens, index + 1, "(", ")")
            grouping.update(t for k, t in tokens[index + 2:end] if k == "ident")
            index = end + 1
        elif kind == "ident" and (following() == "(" or following() in {"by", "without"}):
            index += 1  # a function, or an aggregation with its grouping first
        elif kind == "ident" and text.lower() in _KEYWORDS:
            index += 1
        elif kind == "ident" or text == "{":
            name = text if kind == "ident" else ""
            start = index + 1 if kind == "ident" else index
            matchers: tuple[Matcher, ...] = ()
            if start < len(tokens) and tokens[start][1] == "{":
                end = _closing(tokens, start, "{", "}")
                matchers = _matchers(tokens[start + 1:end], expr)
                index = end + 1
            else:
                index = start
            selectors.append(Selector(name, matchers))
        else:
            index += 1
    return References(tuple(selectors), frozenset(grouping))


def _closing(tokens: list[tuple[str, str]], start: int, opening: str, closing: str) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        depth += {opening: 1, closing: -1}.get(tokens[index][1], 0)
        if depth == 0:
            return index
    raise PromQLError(f"unbalanced {opening!r}")


def _matchers(tokens: list[tuple[str, str]], expr: str) -> tuple[Matcher, ...]:
    parts = [t for t in tokens if t[1] != ","]
    if len(parts) % 3:
        raise PromQLError(f"cannot read the label matchers of {expr!r}")
    found = []
    for label, op, value in zip(parts[::3], parts[1::3], parts[2::3], strict=True):
        if label[0] != "ident" or op[1] not in {"=", "!=", "=~", "!~"} or value[0] != "string":
            raise PromQLError(f"bad label matcher {label[1]}{op[1]}{value[1]} in {expr!r}")
        found.append(Matcher(label[1], op[1], value[1]))
    return tuple(found)


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Grafana's ``$name`` and ``${name}`` replaced; an unknown variable is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise PromQLError(f"unknown template variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(replace, expr)
