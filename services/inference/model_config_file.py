"""TensorFlow Serving's model config file (``--model_config_file``), the part this service serves.

The ``model_config_list`` text format TF Serving reads::

    model_config_list {
      config {
        name: "digits"
        base_path: "/models/digits"          # relative: to this file's directory
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }   # or latest { num_versions: N }, all {}
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }

A hand parser of that subset of the protobuf text format (strings in '' or "", integers,
``name: value``, ``name [:] { ... }``, ``#`` comments, optional ``,``/``;`` between fields), so
no TF Serving protos are needed. Strict: an unknown field, a repeated single field, a bad value
or a TF Serving option this service does not implement is refused with a message naming the
line and the field, and the config in force stays in force.

Base paths stay where the operator said: an absolute one as written, a relative one under this
file's directory (no ``..``), never a URL (``gs://``, ``s3://``: mount the bucket instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from services.common import naturals
from services.inference.model_store import ModelSource
from services.protocol.facts import MODEL_NAME, VERSION_LABEL

PLATFORM = "tensorflow"
_TOKEN = re.compile(
    r"""(?P<space>[ \t\r]+)|(?P<newline>\n)|(?P<comment>\#[^\n]*)"""
    r"""|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<number>-?[0-9]+)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}:,;])"""
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
# TF Serving's fields this service does not implement: named, so the refusal says so.
_UNSUPPORTED = {
    "custom_model_config": "a custom model config",
    "logging_config": "request logging",
    "model_type": "the deprecated model_type (use model_platform)",
}


class ModelConfigFileError(ValueError):
    """The model config file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class _Scalar:
    kind: str  # "string", "number" or "word"
    text: str
    line: int


@dataclass(frozen=True)
class _Field:
    name: str
    value: _Scalar | tuple[_Field, ...]
    line: int


# -- the text format ------------------------------------------------------------------------


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    tokens, line, at = [], 1, 0
    while at < len(text):
        found = _TOKEN.match(text, at)
        if found is None:
            raise ModelConfigFileError(f"{source}:{line}: unexpected character {text[at]!r}")
        kind = found.lastgroup or ""
        if kind == "newline":
            line += 1
        elif kind not in ("space", "comment"):
            tokens.append((kind, found.group(), line))
        at = found.end()
    return tokens


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens = _tokens(text, source)
        self.at = 0

    def fail(self, line: int, message: str) -> ModelConfigFileError:
        return ModelConfigFileError(f"{self.source}:{line}: {message}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            last = self.tokens[-1][2] if self.tokens else 1
            raise self.fail(last, "unexpected end of file (a '}' missing?)")
        self.at += 1
        return token

    def fields(self, closing: bool) -> tuple[_Field, ...]:
        fields = []
        while True:
            token = self.peek()
            if token is None:
                if closing:
                    self.take()  # raises: the file ended inside a message
                return tuple(fields)
            kind, text, line = token
            if text == "}" and kind == "punct":
                if not closing:
                    raise self.fail(line, "unexpected '}'")
                self.take()
                return tuple(fields)
            if kind != "word":
                raise self.fail(line, f"expected a field name, got {text[:40]!r}")
            self.take()
            fields.append(self.value(text, line))
            separator = self.peek()
            if separator is not None and separator[1] in (",", ";"):
                self.take()

    def value(self, name: str, line: int) -> _Field:
        kind, text, at = self.take()
        colon = text == ":"
        if colon:
            kind, text, at = self.take()
        if text == "{":
            return _Field(name, self.fields(closing=True), line)
        if not colon:
            raise self.fail(at, f"{name}: expected ':' or '{{' after the field name")
        if kind not in ("string", "number", "word"):
            raise self.fail(at, f"{name}: expected a value, got {text[:40]!r}")
        return _Field(name, _Scalar(kind, text, at), line)


# -- the schema -----------------------------------------------------------------------------


def parse(text: str, source: str, *, default_kept: int | None) -> dict[str, ModelSource]:
    """Model name -> its source. ``source``: the file's path (for messages and relative base
    paths); ``default_kept``: versions kept for a model without a version policy."""
    reader = _Reader(text, source)
    top = _single(reader, reader.fields(closing=False), {"model_config_list"}, "")
    config_list = top.get("model_config_list")
    if config_list is None:
        raise reader.fail(1, "expected 'model_config_list { config { ... } }'")
    entries = _message(reader, config_list)
    models: dict[str, ModelSource] = {}
    for entry in entries:
        if entry.name != "config":
            raise _unknown(reader, entry, "model_config_list")
        model = _model(reader, entry, Path(source).parent, default_kept)
        if model.name in models:
            raise reader.fail(entry.line, f"config: model '{model.name}' is configured twice")
        models[model.name] = model
    return models


def _model(reader: _Reader, entry: _Field, directory: Path, default_kept: int | None) -> ModelSource:
    fields = _single(
        reader, _message(reader, entry),
        {"name", "base_path", "model_platform", "model_version_policy"}, "config", repeated={"version_labels"},
    )
    name_field = fields.get("name")
    if name_field is None:
        raise reader.fail(entry.line, "config: 'name' is required")
    name = _string(reader, name_field)
    if not MODEL_NAME.fullmatch(name):
        raise reader.fail(
            name_field.line, f"config.name: {name[:60]!r}: model names are letters, digits, '.', '_', '-'"
        )
    where = f"config '{name}'"
    base_field = fields.get("base_path")
    if base_field is None:
        raise reader.fail(entry.line, f"{where}: 'base_path' is required")
    base_path = _base_path(reader, base_field, directory, where)
    platform_field = fields.get("model_platform")
    if platform_field is not None:
        platform = _string(reader, platform_field)
        if platform != PLATFORM:
            raise reader.fail(
                platform_field.line,
                f"{where}: model_platform {platform[:60]!r} is not supported; this service serves '{PLATFORM}'",
            )
    kept, specific = default_kept, None
    policy_field = fields.get("model_version_policy")
    if policy_field is not None:
        kept, specific = _policy(reader, policy_field, where)
    labels: dict[str, int] = {}
    for label_field in fields.get("version_labels", ()):
        label, version = _label(reader, label_field, where)
        if label in labels:
            raise reader.fail(label_field.line, f"{where}: version label '{label}' is assigned twice")
        labels[label] = version
    return ModelSource(name, base_path, kept, specific, labels)


def _base_path(reader: _Reader, field: _Field, directory: Path, where: str) -> Path:
    text = _string(reader, field)
    if not text or "\0" in text:
        raise reader.fail(field.line, f"{where}: base_path is empty")
    if "://" in text:
        raise reader.fail(
            field.line, f"{where}: base_path {text[:80]!r}: only local directories are served (mount remote storage)",
        )
    path = PurePosixPath(text)
    if path.is_absolute():
        return Path(path)
    if ".." in path.parts:
        raise reader.fail(
            field.line, f"{where}: base_path {text[:80]!r}: a relative base_path stays under the config "
            "file's directory (no '..'); write an absolute path to go elsewhere",
        )
    return directory / path


def _policy(reader: _Reader, field: _Field, where: str) -> tuple[int | None, frozenset[int] | None]:
    where = f"{where}: model_version_policy"
    chosen = _single(reader, _message(reader, field), {"latest", "all", "specific"}, where)
    if len(chosen) != 1:
        raise reader.fail(field.line, f"{where}: expected exactly one of latest, all, specific")
    (kind, inner), = chosen.items()
    if kind == "all":
        _single(reader, _message(reader, inner), set(), f"{where}.all")
        return None, None
    if kind == "latest":
        count_field = _single(reader, _message(reader, inner), {"num_versions"}, f"{where}.latest").get("num_versions")
        count = 1 if count_field is None else _number(reader, count_field)  # TF Serving's default: 1
        if count < 1:
            raise reader.fail(inner.line, f"{where}.latest.num_versions: must be at least 1")
        return count, None
    versions = _single(reader, _message(reader, inner), set(), f"{where}.specific", repeated={"versions"})
    numbers = [_number(reader, v) for v in versions.get("versions", ())]
    if not numbers:
        raise reader.fail(inner.line, f"{where}.specific: list at least one version ('versions: N')")
    return None, frozenset(numbers)


def _label(reader: _Reader, field: _Field, where: str) -> tuple[str, int]:
    parts = _single(reader, _message(reader, field), {"key", "value"}, f"{where}: version_labels")
    if set(parts) != {"key", "value"}:
        raise reader.fail(field.line, f"{where}: version_labels needs both 'key' and 'value'")
    label = _string(reader, parts["key"])
    if not VERSION_LABEL.fullmatch(label):
        raise reader.fail(
            parts["key"].line, f"{where}: version label {label[:60]!r}: labels are letters, digits, '.', '_', '-'",
        )
    return label, _number(reader, parts["value"])


# -- field helpers ------------------------------------------------------------------------


def _message(reader: _Reader, field: _Field) -> tuple[_Field, ...]:
    if isinstance(field.value, _Scalar):
        raise reader.fail(field.line, f"{field.name}: expected a message '{{ ... }}', got {field.value.text[:40]!r}")
    return field.value


def _single(
    reader: _Reader, fields: tuple[_Field, ...], allowed: set[str], where: str, *, repeated: set[str] = frozenset(),
) -> dict:
    """Fields by name: each of ``allowed`` at most once, each of ``repeated`` as a list."""
    found: dict = {}
    for field in fields:
        if field.name in repeated:
            found.setdefault(field.name, []).append(field)
        elif field.name in allowed:
            if field.name in found:
                raise reader.fail(field.line, f"{where + ': ' if where else ''}'{field.name}' is given twice")
            found[field.name] = field
        else:
            raise _unknown(reader, field, where)
    return found


def _unknown(reader: _Reader, field: _Field, where: str) -> ModelConfigFileError:
    prefix = f"{where}: " if where else ""
    if field.name in _UNSUPPORTED:
        return reader.fail(field.line, f"{prefix}'{field.name}' ({_UNSUPPORTED[field.name]}) is not supported")
    return reader.fail(field.line, f"{prefix}unknown field '{field.name}'")


def _string(reader: _Reader, field: _Field) -> str:
    value = field.value
    if not isinstance(value, _Scalar) or value.kind != "string":
        raise reader.fail(field.line, f"{field.name}: expected a quoted string")
    body = value.text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


def _number(reader: _Reader, field: _Field) -> int:
    value = field.value
    number = naturals.parse(value.text) if isinstance(value, _Scalar) and value.kind == "number" else None
    if number is None:
        shown = value.text[:40] if isinstance(value, _Scalar) else "a message"
        raise reader.fail(field.line, f"{field.name}: expected a whole number >= 0, got {shown!r}")
    return number
