"""Run schemathesis' CLI against a live service's /openapi.json and read its JSON report."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import VENV_BIN

# What must hold for every generated request. Not positive_data_acceptance: a request valid
# by the schema is still refused when its tensor does not fit the model, and the schema cannot
# say which model a path names.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")


@dataclass
class FuzzRun:
    generated: int
    failures: list[dict]
    errors: list[dict]
    output: str

    def summary(self) -> str:
        return (
            f"{self.generated} cases, {len(self.failures)} failures, {len(self.errors)} errors\n{self.output[-6000:]}"
        )


def config(path: Path, models: list[str], versions: list[str], *, api_key: str | None = None) -> Path:
    """A schemathesis.toml that steers most path parameters to names the server knows, so the
    bodies reach the codecs instead of a 404 (the rest stay random); with ``api_key``, the key
    for both of the gateway's security schemes (so ignored_auth knows what to leave out)."""
    auth = "" if api_key is None else (
        f'[auth.openapi.apiKey]\napi_key = "{api_key}"\n[auth.openapi.bearer]\nbearer = "{api_key}"\n')
    path.write_text(auth +
        f"[dictionaries.models]\nvalues = {json.dumps(models)}\n"
        f"[dictionaries.versions]\nvalues = {json.dumps(versions)}\n"
        "[parameters]\n"
        '"path.name" = { dictionary = "models", probability = 0.8 }\n'
        '"path.version" = { dictionary = "versions", probability = 0.6 }\n'
    )
    return path


def run(url: str, workdir: Path, *, config_file: Path, max_examples: int, seed: int,
        checks: tuple[str, ...] = CHECKS, headers: dict[str, str] | None = None,
        timeout: float = 240) -> FuzzRun:
    report = workdir / "schemathesis.json"
    argv = [str(VENV_BIN / "schemathesis"), "--no-color", "--config-file", str(config_file), "run",
            f"{url}/openapi.json", "-n", str(max_examples), "--seed", str(seed), "--no-shrink",
            # One worker: with two, hypothesis hit a CPython 3.11 race in `ast` ("AST constructor
            # recursion depth mismatch") now and then.
            "--checks", ",".join(checks), "--request-timeout", "30", "--workers", "1",
            "--report", "json", "--report-json-path", str(report)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False)
    data = json.loads(report.read_text())
    return FuzzRun(data["test_cases"]["generated"], data["failures"], data["errors"],
                   done.stdout + done.stderr)
