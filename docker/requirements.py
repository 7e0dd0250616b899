"""Print the pinned requirements of the project and the given extras, one a line, from pyproject.toml.

The image installs these into its venv before the source is copied in, so the dependency layer
is rebuilt only when a requirement changes. Usage: python3 requirements.py PYPROJECT [EXTRA ...]
An extra that pyproject.toml does not declare is skipped (the gateway's may come later).
``python3 requirements.py PYPROJECT --no-deps`` prints instead the packages to install with
``pip install --no-deps`` (``[tool.modelserver] no-deps``: why, in pyproject.toml).
"""

import sys
import tomllib

with open(sys.argv[1], "rb") as file:
    document = tomllib.load(file)
if sys.argv[2:] == ["--no-deps"]:
    for requirement in document.get("tool", {}).get("modelserver", {}).get("no-deps", []):
        print(requirement)
    sys.exit(0)
project = document["project"]
extras = project.get("optional-dependencies", {})
for requirement in project.get("dependencies", []) + [r for e in sys.argv[2:] for r in extras.get(e, [])]:
    print(requirement)
