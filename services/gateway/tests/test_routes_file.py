"""The routes file: what parses, and what is refused with a message that says where."""

from __future__ import annotations

import pytest

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
        ("models: {m: {backends: ['h:1'], versions: {1: -1}}}", "weight -1"),
        ("models: {m: {backends: ['h:1'], versions: {1: 1.5}}}", "weight 1.5"),
        ("models: {m: {backends: ['h:1'], versions: {1: 0}}}", "at least one weight"),
        ("models: {m: {backends: ['h:1'], versions: {1: 1, '01': 1}}}", "listed twice"),
        ("models: {m: {backends: ['h:1'], versions: {}}}", "mapping of version to weight"),
    ],
)
def test_mistakes_are_refused_with_the_place(text, fragment):
    with pytest.raises(RoutesFileError) as error:
        parse(text, "routes.yaml")
    assert fragment in str(error.value)
    assert str(error.value).startswith("routes.yaml")
