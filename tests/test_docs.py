"""Docs that are generated from code must match the code."""

from pathlib import Path

from tools.configuration_doc import render

REPO = Path(__file__).resolve().parents[1]


def test_configuration_doc_is_current():
    assert (REPO / "docs/configuration.md").read_text() == render(), "run `make docs`"


def test_readme_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in first_block[:2]] == ["make run", "make test"]
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in ci
