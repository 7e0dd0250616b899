"""A model directory, or the whole model root, that the server can no longer read: the status
says so and serving goes on with what is loaded.

The server runs as ``nobody`` (``setpriv``): CI runs as root, and root reads a directory
whatever its mode, so ``chmod 000`` alone would prove nothing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.support import models
from tests.support.servers import REPO, start_inference

pytestmark = pytest.mark.slow

EXAMPLE = (REPO / "examples/digit-0.json").read_bytes()


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to start the server as another user")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = pwd.getpwnam("nobody")
    for part in (REPO, *REPO.parents, Path(os.path.realpath(shutil.which("python3") or "/usr/bin/python3"))):
        if part.is_dir() and not os.stat(part).st_mode & 0o005:
            pytest.skip(f"{part} is not readable by nobody")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", "--"]


@pytest.fixture
def served(digits_version):
    """A model root nobody can read, served by an inference server running as nobody."""
    prefix = _unprivileged()
    base = Path(tempfile.mkdtemp(prefix="modelserver-unreadable-"))
    os.chmod(base, 0o755)
    root = base / "models"
    models.copy_version(digits_version, root, "digits", 1)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    (base / "metrics").mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(base / "metrics", nobody.pw_uid, nobody.pw_gid)
    process, url = start_inference(root, base / "server.log", prefix=prefix,
                                   env={"PROMETHEUS_MULTIPROC_DIR": str(base / "metrics")})
    yield url, root
    process.stop(signal.SIGKILL)
    for path in [root, *root.iterdir()]:
        os.chmod(path, 0o755)
    shutil.rmtree(base, ignore_errors=True)


def _errors_shown(url: str, key: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/readyz", timeout=5).json()
        if key in body.get("errors", {}):
            return body
        time.sleep(0.2)
    raise AssertionError(f"/readyz never showed an error for {key!r}: {body}")


@pytest.mark.parametrize("which", ["model", "root"])
def test_an_unreadable_directory_shows_in_the_status_and_serving_continues(served, which):
    url, root = served
    unreadable = root / "digits" if which == "model" else root
    os.chmod(unreadable, 0o000)
    try:
        body = _errors_shown(url, "digits" if which == "model" else "")
        error = body["errors"]["digits" if which == "model" else ""]
        assert "Permission denied" in error and str(unreadable) in error, error
        assert body["status"] == "ready" and body["models"] == {"digits": 1}
        for _ in range(20):
            assert requests.post(f"{url}/v1/models/digits:predict", data=EXAMPLE, timeout=10).status_code == 200
    finally:
        os.chmod(unreadable, 0o755)
    deadline = time.monotonic() + 15  # readable again: the error clears
    while requests.get(f"{url}/readyz", timeout=5).json()["errors"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert requests.get(f"{url}/readyz", timeout=5).json()["errors"] == {}
