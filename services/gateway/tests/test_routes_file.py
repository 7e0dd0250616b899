"""The routes file: what parses, and what is refused with a message that says where."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.routes_file import ModelRoute, RoutesFileError, Target, parse


def test_a_full_routes_file():
    routes = parse("""
models:
  digits:
    backends: ["127.0.0.1:8501", "inference-digits.ns.svc:8080", "[::1]:9000"]
    versions: {"1": 90, 2: 10}
  other:
    backends: "10.0.0.7:8080"
""")
    assert routes.models["digits"] == ModelRoute(
        "digits",
        (Target("127.0.0.1", 8501), Target("inference-digits.ns.svc", 8080), Target("::1", 9000)),
        (("1", 90), ("2", 10)),
    )
    assert routes.models["other"].targets == (Target("10.0.0.7", 8080),)
    assert routes.models["other"].versions == ()
    assert str(Target("::1", 9000)) == "[::1]:9000"


def test_duplicate_backends_count_once_and_versions_are_normalised():
    routes = parse('models: {m: {backends: ["h:1", "h:1"], versions: {"02": 1, "10": 0}}}')
    assert routes.models["m"].targets == (Target("h", 1),)
    assert routes.models["m"].versions == (("2", 1), ("10", 0))


def test_a_canary_between_version_labels():
    routes = parse('models: {m: {backends: ["h:1"], labels: {"stable": 90, canary: 10, "zero": 0}}}')
    assert routes.models["m"].labels == (("canary", 10), ("stable", 90), ("zero", 0))
    assert routes.models["m"].versions == ()


def test_no_models_is_allowed_but_empty():
    assert parse("models: {}").models == {}
    assert parse("models:").models == {}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("models: [", "not valid YAML"),
        ("- 1", "single key 'models'"),
        ("models: {}\nextra: 1", "single key 'models'"),
        ("models: [a]", "must map model names"),
        ("models: {'bad name': {backends: ['h:1']}}", "model names are"),
        ("models: {m: {backends: []}}", "models.m.backends: expected a non-empty list"),
        ("models: {m: {}}", "models.m.backends"),
        ("models: {m: {backends: ['h:1'], weights: {}}}", "unknown keys ['weights']"),
        ("models: {m: {backends: ['h']}}", "'h' is not host:port"),
        ("models: {m: {backends: ['h:0']}}", "is not host:port"),
        ("models: {m: {backends: ['h:65536']}}", "is not host:port"),
        ("models: {m: {backends: ['::1:80']}}", "IPv6 as [addr]:port"),
        ("models: {m: {backends: ['[nothost]:80']}}", "is not host:port"),
        ("models: {m: {backends: [8080]}}", "is not a host:port string"),
        ("models: {m: {backends: ['h:1'], versions: {x: 1}}}", "version 'x' is not an integer"),
        ("models: {m: {backends: ['h:1'], labels: {'a/b': 1}}}", "models.m.labels: label 'a/b': labels are"),
        ("models: {m: {backends: ['h:1'], labels: {1: 1}}}", "models.m.labels: label 1: labels are"),
        ("models: {m: {backends: ['h:1'], labels: {a: -1}}}", "models.m.labels.a: weight -1 is not"),
        ("models: {m: {backends: ['h:1'], labels: {a: 0}}}", "models.m.labels: at least one weight"),
        ("models: {m: {backends: ['h:1'], labels: []}}", "models.m.labels: expected a mapping of label to weight"),
        ("models: {m: {backends: ['h:1'], labels: {a: 1}, versions: {1: 1}}}", "'versions' or by 'labels', not both"),
        ("models: {m: {backends: ['h:1'], versions: {1: -1}}}", "weight -1"),
        ("models: {m: {backends: ['h:1'], versions: {1: 1.5}}}", "weight 1.5"),
        ("models: {m: {backends: ['h:1'], versions: {1: 0}}}", "at least one weight"),
        ("models: {m: {backends: ['h:1'], versions: {1: 1, '01': 1}}}", "listed twice"),
        ("models: {m: {backends: ['h:1'], versions: {}}}", "mapping of version to weight"),
        # "²".isdigit() is true and int() refuses it (a bare ValueError); int() reads "١" as 1.
        ("models: {m: {backends: ['h:²']}}", "models.m.backends: 'h:²' is not host:port"),
        ("models: {m: {backends: ['h:١']}}", "models.m.backends: 'h:١' is not host:port"),
        ("models: {m: {backends: ['h:1'], versions: {'²': 1}}}", "models.m.versions: version '²'"),
        ("models: {m: {backends: ['h:1'], versions: {'١': 1}}}", "models.m.versions: version '١'"),
        ("models: {m: {backends: ['h:%s']}}" % ("9" * 5000), "is not host:port"),  # int() refuses
        ("models: 2001-13-45", "not valid YAML"),  # PyYAML raises a bare ValueError for the date
        ("models: " + "[" * 5000, "not valid YAML"),  # and RecursionError for deep nesting
    ],
)
def test_mistakes_are_refused_with_the_place(text, fragment):
    with pytest.raises(RoutesFileError) as error:
        parse(text, "routes.yaml")
    assert fragment in str(error.value)
    assert str(error.value).startswith("routes.yaml")


_TEXT = st.text(st.sampled_from("0123456789²١:[]-.a "), max_size=8)
_ROUTE = st.fixed_dictionaries({
    "backends": st.lists(_TEXT | st.integers(), max_size=3),
    "versions": st.dictionaries(_TEXT | st.integers(), st.integers(-1, 3) | _TEXT, max_size=3),
})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TEXT, _ROUTE, max_size=2) | st.text(max_size=40))
def test_any_routes_file_parses_or_is_refused_with_the_place(document):
    """Nothing else escapes: a bare ValueError used to crash the reload instead of being reported."""
    text = document if isinstance(document, str) else yaml.safe_dump({"models": document})
    try:
        parse(text, "routes.yaml")
    except RoutesFileError as error:
        assert str(error).startswith("routes.yaml: ")
