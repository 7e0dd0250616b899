"""TF Serving's model config file: what parses, and what is refused with a message that says where."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.inference.model_config_file import ModelConfigFileError, parse
from services.inference.model_store import ModelSource

SOURCE = "/etc/models/models.config"


def parsed(text: str, default_kept: int | None = 2) -> dict[str, ModelSource]:
    return parse(text, SOURCE, default_kept=default_kept)


def test_tf_servings_documented_example_with_every_policy_and_labels():
    models = parsed("""
# TF Serving's own example, plus a model per policy
model_config_list {
  config {
    name: 'my_first_model'
    base_path: '/tmp/my_first_model/'
    model_platform: 'tensorflow'
    model_version_policy {
      specific {
        versions: 42
        versions: 43
      }
    }
    version_labels {
      key: 'stable'
      value: 42
    }
    version_labels {
      key: 'canary'
      value: 43
    }
  }
  config {
    name: "latest3"
    base_path: "relative/dir"
    model_platform: "tensorflow"
    model_version_policy: { latest: { num_versions: 3 } }
  }
  config { name: "every", base_path: "/m/every"; model_version_policy { all {} } }
  config { name: "plain" base_path: "/m/plain" }
  config { name: "latest" base_path: "/m/l" model_version_policy { latest {} } }
}
""")
    assert models["my_first_model"] == ModelSource(
        "my_first_model", Path("/tmp/my_first_model"), None, frozenset({42, 43}), {"stable": 42, "canary": 43},
    )
    assert models["latest3"] == ModelSource("latest3", Path("/etc/models/relative/dir"), 3)
    assert models["every"] == ModelSource("every", Path("/m/every"), None)
    assert models["plain"].kept == 2 and models["plain"].specific is None  # INFERENCE_VERSION_POLICY's
    assert models["latest"].kept == 1  # TF Serving's default for latest {}
    assert list(models) == ["my_first_model", "latest3", "every", "plain", "latest"]


def test_an_empty_list_and_escapes():
    assert parsed("model_config_list {}") == {}
    models = parsed(r'model_config_list { config { name: "a" base_path: "/d\"q\\x" } }')
    assert models["a"].base_path == Path('/d"q\\x')


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", ":1: expected 'model_config_list"),
        ("model_config_list {", ":1: unexpected end of file"),
        ("model_config_list { config { name: 'a' base_path: '/a' }", ":1: unexpected end of file"),
        ("model_config_list {}\n}", ":2: unexpected '}'"),
        ("model_config_list {} model_config_list {}", "'model_config_list' is given twice"),
        ("custom_model_config {}", "'custom_model_config' (a custom model config) is not supported"),
        ("model_config_list { bogus {} }", "model_config_list: unknown field 'bogus'"),
        ("model_config_list {\n config {\n  base_path: '/a'\n }\n}", ":2: config: 'name' is required"),
        ("model_config_list { config { name: 'a' } }", "config 'a': 'base_path' is required"),
        ("model_config_list { config { name: 'bad name' base_path: '/a' } }", "config.name: 'bad name'"),
        ("model_config_list { config { name: a base_path: '/a' } }", "name: expected a quoted string"),
        ("model_config_list { config { name 'a' } }", "name: expected ':' or '{'"),
        ("model_config_list { config { name: 'a' base_path: '/a' name: 'b' } }", "config: 'name' is given twice"),
        (
            "model_config_list {\nconfig { name: 'a' base_path: '/a' }\nconfig { name: 'a' base_path: '/b' }\n}",
            ":3: config: model 'a' is configured twice",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a'\n\n model_platform: 'pytorch' } }",
            ":3: config 'a': model_platform 'pytorch' is not supported; this service serves 'tensorflow'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_type: 1 } }",
            "'model_type' (the deprecated model_type (use model_platform)) is not supported",
        ),
        ("model_config_list { config { name: 'a' base_path: '/a' logging_config {} } }", "request logging"),
        ("model_config_list { config { name: 'a' base_path: '/a' extra: 1 } }", "config: unknown field 'extra'"),
        ("model_config_list { config { name: 'a' base_path: '' } }", "base_path is empty"),
        ("model_config_list { config { name: 'a' base_path: 'gs://bucket/a' } }", "only local directories"),
        ("model_config_list { config { name: 'a' base_path: '../elsewhere' } }", "no '..'"),
        ("model_config_list { config { name: 'a' base_path: 'x/../../y' } }", "no '..'"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy {} } }",
            "model_version_policy: expected exactly one of latest, all, specific",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { all {} latest {} } } }",
            "expected exactly one of latest, all, specific",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { newest {} } } }",
            "model_version_policy: unknown field 'newest'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' "
            "model_version_policy { latest { num_versions: 0 } } } }",
            "latest.num_versions: must be at least 1",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' "
            "model_version_policy { latest { num_versions: -2 } } } }",
            "num_versions: expected a whole number >= 0, got '-2'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { latest { count: 2 } } } }",
            "latest: unknown field 'count'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { all { x: 1 } } } }",
            "all: unknown field 'x'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { specific {} } } }",
            "specific: list at least one version",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' "
            "model_version_policy { specific { versions: 'x' } } } }",
            "versions: expected a whole number >= 0, got \"'x'\"",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy: 3 } }",
            "model_version_policy: expected a message",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' version_labels { key: 'x' } } }",
            "version_labels needs both 'key' and 'value'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' version_labels { key: 'a/b' value: 1 } } }",
            "version label 'a/b': labels are",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' version_labels { key: 's' value: 1 }\n"
            "version_labels { key: 's' value: 2 } } }",
            ":2: config 'a': version label 's' is assigned twice",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' version_labels { key: 's' value: one } } }",
            "value: expected a whole number >= 0, got 'one'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' version_labels { key: 's' value: 1 colour: 2 } } }",
            "version_labels: unknown field 'colour'",
        ),
        ("model_config_list { config { name: 'a\n' } }", ":1: unexpected character"),
        ("model_config_list { config < > }", "unexpected character '<'"),
        ("model_config_list { config { name: { } } }", "name: expected a quoted string"),
        ("model_config_list { config { 3: 'a' } }", "expected a field name, got '3'"),
        ("model_config_list { config { name: } } }", "name: expected a value, got '}'"),
    ],
)
def test_every_mistake_is_refused_with_its_place(text, fragment):
    with pytest.raises(ModelConfigFileError) as raised:
        parsed(text)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}:"), message
    assert fragment in message, message


def test_a_long_file_names_the_right_line():
    lines = ["model_config_list {"] + [f"  config {{ name: 'm{i}' base_path: '/m/{i}' }}" for i in range(40)]
    lines += ["  config { name: 'late' base_path: '/m/late' model_platform: 'onnx' }", "}"]
    with pytest.raises(ModelConfigFileError, match=rf"^{SOURCE}:42: config 'late': model_platform 'onnx'"):
        parsed("\n".join(lines))
