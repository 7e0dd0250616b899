"""The Docker image for real: built on a locally made base (no registry), run hardened.

The fixtures do the whole set-up `make test` needs on a fresh machine (as root: install and start
Docker, debootstrap the base image once, then build the product image; the build cache makes a
re-run take seconds) and print what each step cost. Without a Docker engine that this user can
start, the module is skipped, saying why. Containers run as CI and Kubernetes run them:
`--network host` on free loopback ports, `--read-only` with a tmpfs on /tmp only, a non-root user
and no capabilities at all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from services import __version__
from tests.support.servers import REPO, free_port

# Building from cold takes minutes (a Debian bootstrap and TensorFlow's wheel): that happens in
# the first test's fixtures, which pytest-timeout counts against that test.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]



def docker_client() -> str:
    """Debian's client, which builds with BuildKit without the buildx plugin (see
    tools/build-image.sh). Chosen at each call: on a fresh machine tools/docker-engine.sh
    installs it during the first fixture, and a newer client found earlier on PATH cannot build."""
    return os.environ.get("DOCKER") or ("/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker")

BASE_IMAGE = os.environ.get("IMAGE_TEST_BASE", "ci/bookworm-python:12")
UID = "10001"
STOP_GRACE = 30  # seconds `docker stop` waits before it kills
GATEWAY_CONFIG = REPO / "services/gateway/gunicorn.conf.py"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([docker_client(), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        output = result.stderr + result.stdout
        raise AssertionError(f"docker {' '.join(args)} -> {result.returncode}:\n{output}")
    return result


def report(request: pytest.FixtureRequest, line: str) -> None:
    """A line on the terminal, uncaptured, so build times show in every `make test`."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[image] {line}")


def setup_step(
    request: pytest.FixtureRequest, argv: Sequence[str], env: dict[str, str] | None = None
) -> str:
    """Run a tools/ script; exit 2 means 'this user cannot do it here' and skips the module."""
    started = time.perf_counter()
    result = subprocess.run(
        list(argv), cwd=REPO, env={**os.environ, "DOCKER": docker_client(), **(env or {})},
        capture_output=True, text=True, timeout=1500,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 2:
        pytest.skip(f"no Docker image test here: {output}")
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    said = " / ".join(
        line for line in output.splitlines() if not line.startswith(("building ", "modelserver:"))
    )
    report(request, f"{Path(argv[0]).name}: {time.perf_counter() - started:.1f} s  {said}".rstrip())
    return result.stdout


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> str:
    """The product image, built by the same script as `make image`, on the local base image."""
    setup_step(request, ["tools/docker-engine.sh"])
    setup_step(request, ["tools/base-image.sh", BASE_IMAGE])
    out = setup_step(request, ["tools/build-image.sh"], {"BASE_IMAGE": BASE_IMAGE})
    return out.strip().splitlines()[-1]


@dataclass
class Container:
    name: str
    url: str
    grpc: str  # host:port of its gRPC server

    def logs(self) -> str:
        result = docker("logs", "--tail", "60", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *argv, check=False)

    def inspect(self, template: str) -> str:
        return docker("inspect", "-f", template, self.name).stdout.strip()


def hardened(image: str, command: str, env: dict[str, str], *extra: str) -> list[str]:
    """`docker run` with what a hardened Kubernetes securityContext gives: non-root, read-only
    root filesystem plus a tmpfs on /tmp, no capabilities, no privilege escalation."""
    return [
        "run", "-d", "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--user", f"{UID}:{UID}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        *[f"--env={key}={value}" for key, value in env.items()], *extra, image, command,
    ]


@contextmanager
def start(
    image: str, command: str, bind_env: str, ready_path: str, env: dict[str, str] | None = None,
    *extra: str, timeout: float = 180,
) -> Iterator[Container]:
    """A hardened container of `command` on free loopback ports (HTTP, and gRPC: the image's own
    8500 would be shared by both containers on the host network), once `ready_path` answers 200."""
    port, grpc_port = free_port(), free_port()
    name = f"modelserver-test-{command}-{uuid.uuid4().hex[:8]}"
    settings = {bind_env: f"127.0.0.1:{port}", bind_env.replace("_BIND", "_GRPC_BIND"): f"127.0.0.1:{grpc_port}",
                **(env or {})}
    docker(*hardened(image, command, settings, "--name", name, *extra))
    container = Container(name, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(container.url + ready_path, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if container.inspect("{{.State.Running}}") != "true":
                raise AssertionError(f"{command} container exited:\n{container.logs()}")
            if time.monotonic() > deadline:
                logs = container.logs()
                raise AssertionError(f"{command} container not ready after {timeout} s:\n{logs}")
            time.sleep(0.5)
        yield container
    finally:
        docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def inference(image: str, request: pytest.FixtureRequest) -> Iterator[Container]:
    started = time.perf_counter()
    with start(image, "inference", "INFERENCE_BIND", "/readyz", {"INFERENCE_WORKERS": "1"}) as container:
        report(request, f"inference container ready in {time.perf_counter() - started:.1f} s")
        yield container


# -- the image as built -------------------------------------------------------------------------


def test_image_metadata(image: str, request: pytest.FixtureRequest):
    assert re.fullmatch(r"modelserver:digits-1-[0-9a-f]{12}(-dirty)?", image), image
    info = json.loads(docker("image", "inspect", image).stdout)[0]
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.version"] == __version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head.stdout.strip()
    assert labels["io.github.modelserver.model.name"] == "digits"
    assert "healthcheck.py" in " ".join(config["Healthcheck"]["Test"])
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(config["Env"])
    assert config["Cmd"] == ["inference"]
    assert {"8080/tcp", "8000/tcp", "8500/tcp"} <= set(config["ExposedPorts"])
    assert {"INFERENCE_GRPC_BIND=0.0.0.0:8500", "GATEWAY_GRPC_BIND=0.0.0.0:8500"} <= set(config["Env"])
    assert not any(tag.endswith(":latest") for tag in info["RepoTags"])
    layers = docker("history", "--format", "{{.Size}} {{.CreatedBy}}", image).stdout.splitlines()
    venv = next(row.split()[0] for row in layers if "/opt/venv /opt/venv" in row)
    report(request, f"{image}: {info['Size'] / 1e6:.0f} MB, of which the venv layer {venv}")


FINAL_STAGE_PROBE = """
import importlib.util, json, os, shutil
found = {
    "tools": [t for t in ("gcc", "cc", "c++", "clang", "ld", "strip", "make") if shutil.which(t)],
    "modules": [m for m in ("pip", "sklearn", "scipy", "setuptools") if importlib.util.find_spec(m)],
    "caches": [],
}
for top, dirs, _ in os.walk("/"):
    if top in ("/proc", "/sys", "/dev"):
        dirs.clear()
    elif top.endswith(("/.cache/pip", "/tensorflow/include")):
        found["caches"].append(top)
print(json.dumps(found))
"""


def test_final_stage_has_no_build_tools_caches_or_training_deps(image: str):
    # As root, so that no directory is hidden from the walk by its permissions.
    probe = docker(
        "run", "--rm", "--network", "none", "--user", "0", image, "python3", "-c", FINAL_STAGE_PROBE
    )
    assert json.loads(probe.stdout) == {"tools": [], "modules": [], "caches": []}


def test_refuses_to_start_without_a_writable_tmp(image: str):
    result = docker(
        "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL", image, check=False
    )
    assert result.returncode == 73, result.stderr
    assert "--tmpfs /tmp" in result.stderr


# -- the inference container --------------------------------------------------------------------


def assert_reads_the_examples_zero(url: str) -> None:
    """The README's two curl examples (an 8x8 image of a 0), over both protocols."""
    example = (REPO / "examples/digit-0.json").read_bytes()
    tfs = requests.post(f"{url}/v1/models/digits:predict", data=example)
    assert tfs.status_code == 200, tfs.text
    assert np.argmax(tfs.json()["predictions"][0]) == 0, tfs.text
    v2 = requests.post(
        f"{url}/v2/models/digits/infer", data=(REPO / "examples/digit-0-v2.json").read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert v2.status_code == 200, v2.text
    assert np.argmax(v2.json()["outputs"][0]["data"]) == 0, v2.text


def test_predicts_correctly_over_both_protocols(inference: Container):
    from tools.train_digits import load_data

    _, x_test, _, y_test = load_data()
    response = requests.post(
        f"{inference.url}/v1/models/digits:predict", json={"instances": x_test.tolist()}
    )
    assert response.status_code == 200, response.text
    accuracy = float(np.mean(np.argmax(response.json()["predictions"], axis=1) == y_test))
    assert accuracy >= 0.95, accuracy

    assert_reads_the_examples_zero(inference.url)
    metrics = requests.get(f"{inference.url}/metrics")
    assert "modelserver_" in metrics.text  # the multiprocess directory on the tmpfs works


PROCESSES_PROBE = """
import glob, os
for status in glob.glob("/proc/[0-9]*/status"):
    if int(status.split("/")[2]) == os.getpid():
        continue
    fields = dict(line.split(":", 1) for line in open(status))
    print(fields["Name"].strip(), fields["Uid"].split()[0], fields["CapEff"].strip())
"""


def test_every_process_runs_as_non_root_without_capabilities(inference: Container):
    assert inference.exec("id", "-u").stdout.strip() == UID
    rows = [row.split() for row in inference.exec("python3", "-c", PROCESSES_PROBE).stdout.splitlines()]
    assert len(rows) >= 2, rows  # the Gunicorn master and its worker
    assert {(uid, caps) for _, uid, caps in rows} == {(UID, "0000000000000000")}, rows


def test_root_filesystem_is_read_only_but_tmp(inference: Container):
    for path in ("/app/services/x", "/models/x", "/opt/venv/x", "/x"):
        result = inference.exec("touch", path)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (path, result)
    assert inference.exec("touch", "/tmp/x").returncode == 0


def test_healthcheck_reports_healthy(inference: Container):
    deadline = time.monotonic() + 60
    while (status := inference.inspect("{{.State.Health.Status}}")) == "starting":
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == "healthy", inference.inspect("{{json .State.Health}}")


# -- the gateway container, in front of the inference container ---------------------------------


@pytest.fixture(scope="module")
def gateway(
    image: str, inference: Container, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    if not GATEWAY_CONFIG.exists():
        pytest.skip("no gateway service in this tree yet (services/gateway/gunicorn.conf.py)")
    routes = tmp_path_factory.mktemp("gateway") / "routes.yaml"
    backend = inference.url.removeprefix("http://")
    routes.write_text(f'models:\n  digits:\n    backends: ["{backend}"]\n')
    routes.chmod(0o644)
    with start(
        image, "gateway", "GATEWAY_BIND", "/healthz",
        {"GATEWAY_ROUTES_FILE": "/etc/modelserver/routes.yaml"},
        "--volume", f"{routes}:/etc/modelserver/routes.yaml:ro",
    ) as container:
        yield container


def test_gateway_forwards_predictions_to_the_inference_container(gateway: Container):
    assert_reads_the_examples_zero(gateway.url)


def test_gateway_forwards_grpc_predictions_to_the_inference_containers_grpc_port(gateway: Container):
    """The gateway learns the inference container's gRPC port from its /readyz."""
    import tritonclient.grpc as triton

    image = np.asarray(json.loads((REPO / "examples/digit-0.json").read_text())["instances"], dtype=np.float32)
    pixels = triton.InferInput("pixels", list(image.shape), "FP32")
    pixels.set_data_from_numpy(image)
    result = triton.InferenceServerClient(gateway.grpc).infer("digits", [pixels], client_timeout=30)
    (output,) = result.get_response().outputs
    assert np.argmax(result.as_numpy(output.name)) == 0


def test_gateway_runs_as_non_root_without_tensorflow(gateway: Container):
    rows = [row.split() for row in gateway.exec("python3", "-c", PROCESSES_PROBE).stdout.splitlines()]
    assert rows and {(uid, caps) for _, uid, caps in rows} == {(UID, "0000000000000000")}, rows
    maps = gateway.exec("sh", "-c", "cat /proc/[0-9]*/maps").stdout
    assert "libtensorflow" not in maps


# -- stopping (last: these stop the module's containers) ----------------------------------------


def assert_stops_cleanly(container: Container) -> None:
    started = time.perf_counter()
    docker("stop", "--time", str(STOP_GRACE), container.name, timeout=STOP_GRACE + 30)
    seconds = time.perf_counter() - started
    # Exit code 0 (not 137): Gunicorn handled SIGTERM and exited before docker had to kill it.
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert seconds < STOP_GRACE, seconds
    assert "Shutting down: Master" in container.logs()


def test_gateway_stops_cleanly_on_docker_stop(gateway: Container):
    assert_stops_cleanly(gateway)


def test_inference_stops_cleanly_on_docker_stop(inference: Container):
    assert_stops_cleanly(inference)
