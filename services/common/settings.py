"""Typed settings from environment variables, declared once per service.

A service declares a frozen dataclass whose fields use :func:`setting`; :func:`load` fills it
from the environment (``PREFIX_FIELD_NAME``, or an explicit alias) and fails fast, naming the
variable, when a value does not parse. :func:`describe` renders the same declarations as the
documentation table, so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from services.common import naturals

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def setting(default: Any, doc: str, *, aliases: tuple[str, ...] = (), minimum: float | None = None) -> Any:
    """Declare one setting: its default, a one-line doc, extra env names and a lower bound."""
    return dataclasses.field(
        default=default, metadata={"doc": doc, "aliases": aliases, "minimum": minimum}
    )


def env_names(cls: type, prefix: str, name: str) -> list[str]:
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return [f"{prefix}{name.upper()}", *field.metadata.get("aliases", ())]


def _cast(raw: str, kind: Any, env: str) -> Any:
    try:
        if kind is bool:
            value = raw.strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if kind is int:
            return _number(naturals.parse_int(raw.strip()), "a whole number")
        if kind is float:
            return _number(naturals.parse_float(raw.strip()), "a decimal number")
        if kind is Path:
            return Path(raw)
        if kind is str or kind == (str | None):
            return raw
        if kind == tuple[str, ...]:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as error:
        raise SettingsError(f"{env}={raw!r}: {error}") from None
    raise TypeError(f"no parser for settings of type {kind!r}")


def _number(value: T | None, expected: str) -> T:
    if value is None:
        raise ValueError(f"expected {expected} in ASCII digits")
    return value


def load(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from the environment; ``overrides`` win over it (tests, embedding)."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
            continue
        for env in env_names(cls, prefix, field.name):
            if env in environ:
                values[field.name] = _cast(environ[env], hints[field.name], env)
                break
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    result = cls(**values)
    for field in dataclasses.fields(cls):
        minimum = field.metadata.get("minimum")
        value = getattr(result, field.name)
        if minimum is not None and value < minimum:
            env = env_names(cls, prefix, field.name)[0]
            raise SettingsError(f"{env}={value!r}: must be at least {minimum}")
    return result


def describe(cls: type, prefix: str) -> str:
    """The settings as a Markdown table: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(cls):
        names = env_names(cls, prefix, field.name)
        shown = ", ".join(f"`{n}`" for n in names)
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(default)
        default = f"`{default}`" if default != "" else "(none)"
        rows.append(f"| {shown} | {default} | {field.metadata['doc']} |")
    return "\n".join(rows)
