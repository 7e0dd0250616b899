"""Docs that are generated from code must match the code, and their links must lead somewhere."""

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.support import markdown
from tools.configuration_doc import render

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "SECURITY.md", *(REPO / "docs").glob("*.md")])
ARCHITECTURE_MAX_LINES = 250  # a design a newcomer reads in ten minutes; measurements go to findings.md


def test_configuration_doc_is_current():
    assert (REPO / "docs/configuration.md").read_text() == render(), "run `make docs`"


def test_readme_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in first_block[:2]] == ["make run", "make test"]
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in ci


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """Relative links of one page whose file is missing or whose ``#anchor`` is no heading there."""
    broken = []
    for link in markdown.links(page.read_text()):
        parts = urlsplit(link.target)
        if parts.scheme or parts.netloc:
            continue  # another site: not ours to check offline
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not target.exists() or root not in (target, *target.parents):
            broken.append(f"{page.name}:{link.line}: {link.target} (no such file in the repository)")
        elif parts.fragment and target.suffix == ".md" and (
                unquote(parts.fragment) not in markdown.anchors(target.read_text())):
            broken.append(f"{page.name}:{link.line}: {link.target} (no such heading)")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_anchor_leads_somewhere(page):
    assert not broken_links(page), broken_links(page)


def test_the_link_check_catches_a_missing_file_a_missing_heading_and_a_way_out(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside.md").write_text("# Outside\n")
    (repo / "other.md").write_text("# The `make bench` run: 1.28\n## Twice\n## Twice\n")
    page = repo / "page.md"
    page.write_text("[a](other.md#the-make-bench-run-128) [b](other.md#twice-1) [c](#here) [w](https://x.org/#y)\n"
                    "# Here\n"
                    "[d](gone.md) [e](other.md#nowhere) [f](../outside.md) `[g](gone.md)`\n```\n[h](gone.md)\n```\n")
    assert broken_links(page, root=repo) == ["page.md:3: gone.md (no such file in the repository)",
                                             "page.md:3: other.md#nowhere (no such heading)",
                                             "page.md:3: ../outside.md (no such file in the repository)"]


def test_architecture_stays_a_short_design_document():
    lines = len((REPO / "docs/architecture.md").read_text().splitlines())
    assert lines <= ARCHITECTURE_MAX_LINES, (
        f"docs/architecture.md has {lines} lines: keep decisions and reasons there, move measurements "
        "and investigations to docs/findings.md")
