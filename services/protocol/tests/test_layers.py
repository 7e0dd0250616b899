"""The packages' layering: each imports only the layers below it, so a rule lives in one place
and a lower layer never needs a service to be importable."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2]
# What each package may import of ours; the two services sit on top of all three.
ALLOWED = {
    "protocol": {"protocol"},
    "common": {"common", "protocol"},
    "runtime": {"runtime", "common", "protocol"},
    "gateway": {"gateway", "runtime", "common", "protocol"},
    "inference": {"inference", "runtime", "common", "protocol"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_imports_only_the_layers_below_it():
    broken = []
    for package, allowed in ALLOWED.items():
        for path in sorted((SERVICES / package).glob("*.py")):
            extra = imported_packages(path) - allowed
            if extra:
                broken.append(f"{path.relative_to(SERVICES)} imports services.{sorted(extra)}")
    assert not broken, broken


def test_every_package_is_in_the_layering():
    packages = {p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED), packages


def test_the_check_sees_an_import_that_breaks_the_layering(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from services.gateway import routing\nimport services.inference.servable\n")
    assert imported_packages(module) == {"gateway", "inference"}
