"""Numbers from untrusted text, and no module parsing them its own way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.common import naturals

SERVICES = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, number", [("0", 0), ("007", 7), ("9" * 18, int("9" * 18))])
def test_naturals_are_ascii_digits(text, number):
    assert naturals.parse(text) == number


@pytest.mark.parametrize("text", ["", "²", "١", "1²", "-1", "+1", " 1", "1_0", "1.0", "9" * 19])
def test_everything_else_is_not_a_natural(text):
    assert naturals.parse(text) is None


def test_hex_signed_and_decimal_siblings():
    assert [naturals.parse_hex(t) for t in ("0", "1a", "FF", "f" * 15)] == [0, 26, 255, 16**15 - 1]
    assert all(naturals.parse_hex(t) is None for t in ("", "-1", "0x1", "1_0", " 1", "²", "١", "f" * 16))
    assert [naturals.parse_int(t) for t in ("3", "-3", "+3", "-0")] == [3, -3, 3, 0]
    assert all(naturals.parse_int(t) is None for t in ("", "-", "--1", "²", "-١", "1e3"))
    assert [naturals.parse_float(t) for t in ("1", "-0.5", ".5", "5.", "1e3", "+2E-2")] == [
        1.0, -0.5, 0.5, 5.0, 1000.0, 0.02]
    assert all(naturals.parse_float(t) is None
               for t in ("", ".", "nan", "inf", "-Infinity", "1e999", "1_0.5", "١.٥", "1,5", "0x1p3"))


_ISDIGIT = re.compile(r"\.isdigit\(\)")


def test_no_module_parses_numbers_with_isdigit():
    """``"²".isdigit()`` is true: a module that checks digits with it and then calls int() is
    the bug naturals.py exists for. Tests may still use it in assertions (Retry-After)."""
    offenders = [
        f"{path.relative_to(SERVICES.parent)}:{number}"
        for path in sorted(SERVICES.rglob("*.py"))
        if path.name != "naturals.py" and "tests" not in path.relative_to(SERVICES).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _ISDIGIT.search(line)
    ]
    assert not offenders, f"parse numbers with services.common.naturals: {offenders}"
