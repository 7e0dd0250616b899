from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common import settings
from services.common.settings import SettingsError, setting


@dataclass(frozen=True)
class Example:
    root: Path = setting(Path("models"), "where", aliases=("ROOT",))
    workers: int = setting(2, "how many", minimum=1)
    ratio: float = setting(0.5, "a ratio")
    verbose: bool = setting(False, "talk more")
    keys: tuple[str, ...] = setting((), "some keys")


def test_defaults_env_aliases_and_overrides():
    assert settings.load(Example, "X_", {}) == Example()
    loaded = settings.load(Example, "X_", {"ROOT": "/m", "X_WORKERS": "4", "X_VERBOSE": "yes", "X_KEYS": "a, b,"})
    assert loaded == Example(root=Path("/m"), workers=4, verbose=True, keys=("a", "b"))
    # The prefixed name wins over the alias; explicit overrides win over both.
    assert settings.load(Example, "X_", {"X_ROOT": "/p", "ROOT": "/m"}).root == Path("/p")
    assert settings.load(Example, "X_", {"X_WORKERS": "4"}, workers=8).workers == 8
    # What int() and float() took before and a deployment may spell: spaces, signs, exponents.
    loaded = settings.load(Example, "X_", {"X_WORKERS": " +3 ", "X_RATIO": "-2.5e-1"})
    assert (loaded.workers, loaded.ratio) == (3, -0.25)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"X_WORKERS": "two"}, "X_WORKERS='two'"),
        ({"X_WORKERS": "0"}, "must be at least 1"),
        ({"X_VERBOSE": "maybe"}, "expected one of"),
        ({"X_RATIO": "1,5"}, "X_RATIO"),
        # "²".isdigit() is true and int() refuses it; int() and float() read "١" (Arabic-Indic).
        ({"X_WORKERS": "²"}, "X_WORKERS='²'"),
        ({"X_WORKERS": "١"}, "X_WORKERS='١'"),
        ({"X_RATIO": "١.٥"}, "X_RATIO='١.٥'"),
        ({"X_RATIO": "nan"}, "X_RATIO='nan'"),
        ({"X_WORKERS": "4_000"}, "X_WORKERS"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        settings.load(Example, "X_", env)


def test_unknown_overrides_are_a_programming_error():
    with pytest.raises(TypeError):
        settings.load(Example, "X_", {}, nope=1)


def test_describe_lists_every_variable_with_its_default():
    table = settings.describe(Example, "X_")
    assert "| `X_ROOT`, `ROOT` | `models` | where |" in table
    assert table.count("\n") == 6
