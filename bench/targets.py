"""What the harness measures: each target is a base URL plus how to start (and stop) it.

Every target serves both benchmark models under the same TF Serving REST path, so one load
script fits all: ``POST {url}/v1/models/{name}:predict`` with ``{"instances": [...]}``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.workload import TFS, V2_BINARY, Request
from tests.support.servers import REPO, VENV_BIN, Process, free_port

GATEWAY_CONF = REPO / "services/gateway/gunicorn.conf.py"
# Target (4): the local stack (`make run`): nginx -> gateway -> 2 inference replicas of one
# worker each (the same two inference processes as target (3) has). A shell command with
# {port}, {model_root}, {run_dir} and {python} placeholders; nginx's per-client rate limit is
# lifted, since the whole benchmark is one client. BENCH_STACK_COMMAND overrides it;
# BENCH_STACK_URL measures a stack that is already running instead (its models must include the
# ones measured). BENCH_STACK_METRICS: the replicas' base URLs, comma-separated, for the
# achieved batch size (found by itself for the stack it starts).
STACK_COMMAND = ("{python} -m stack --port {port} --model-root {model_root} --run-dir {run_dir} "
                 "--replicas 2 --inference-workers 1 --rate-limit 1000000r/s --rate-burst 1000000")
BASELINE_WORKERS = 2  # the "2 sync Gunicorn workers"


@dataclass
class Running:
    url: str
    metrics_urls: list[str] = field(default_factory=list)  # where modelserver_batch_size lives
    pid: int | None = None  # the server's root process, for its CPU time; None if not ours
    grpc: str | None = None  # host:port of its gRPC server, when it runs one (the inference service)
    concurrency: int | None = None  # requests it takes at once before refusing (the stack's nginx cap)


@dataclass(frozen=True)
class Start:
    """What a target needs to start: the models, where to log, and what 'ready' means."""

    models: Path
    logs: Path
    bodies: dict[str, bytes]  # one request per model: ready once each answers 200
    workers: int | None = None  # None: the target's own default


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    start: Callable[[Start], AbstractContextManager[Running]]
    skip: Callable[[], str | None] = lambda: None
    protocol: str = TFS  # which form of the request it is sent (bench.workload)
    models: tuple[str, ...] | None = None  # the benchmark models it is measured on; None: all


def _post_ok(url: str, body: bytes, headers: dict[str, str], timeout: float = 30) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def settle(base_url: str, request: Request, timeout: float = 120) -> None:
    """Wait until the target answers ``request``: whatever was queued before it is done."""
    deadline = time.monotonic() + timeout
    headers = {"Content-Type": request.content_type, **dict(request.headers)}
    while not _post_ok(base_url + request.path, request.body.read_bytes(), headers, timeout):
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


def wait_for_predictions(url: str, bodies: dict[str, bytes], process: Process, timeout: float = 180) -> None:
    """Ready means every model answers a real prediction (the baselines have no /readyz)."""
    deadline = time.monotonic() + timeout
    for name, body in bodies.items():
        while not _post_ok(f"{url}/v1/models/{name}:predict", body, {"Content-Type": "application/json"}):
            if not process.alive():
                raise RuntimeError(f"{process.log_tail()}\nserver exited during start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not serve {name} within {timeout}s\n{process.log_tail()}")
            time.sleep(0.3)


@contextmanager
def _serve(argv: list[str], env: dict[str, str], log: Path, start: Start, cwd: Path = REPO,
           metrics: bool = False) -> Iterator[Running]:
    port = free_port()
    process = Process([a.format(port=port) for a in argv],
                      {k: v.format(port=port) for k, v in env.items()}, log, cwd=cwd)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_predictions(url, start.bodies, process)
        yield Running(url, [url] if metrics else [], process.pid)
    finally:
        process.stop(signal.SIGTERM, timeout=60)


def _baseline(module: str) -> Callable[[Start], AbstractContextManager[Running]]:
    def start(s: Start) -> AbstractContextManager[Running]:
        workers = str(s.workers or BASELINE_WORKERS)
        argv = [str(VENV_BIN / "gunicorn"), "-w", workers, "-k", "sync", "-b", "127.0.0.1:{port}",
                "--timeout", "120", "--log-level", "warning", f"bench.{module}:app"]
        env = {"BENCH_MODEL_ROOT": str(s.models), "BENCH_WORKERS": workers, "TF_CPP_MIN_LOG_LEVEL": "2"}
        return _serve(argv, env, s.logs / f"{module}.log", s)

    return start


def inference_target(key: str, title: str = "") -> Target:
    """This checkout's inference service as a target of its own (``key`` names its log)."""
    return Target(key, title or key, _inference(key))


def _inference(
    name: str, repo: Path = REPO, *, grpc: bool = False
) -> Callable[[Start], AbstractContextManager[Running]]:
    """The service from ``repo``'s checkout, as configured by INFERENCE_* (defaults otherwise);
    ``grpc``: with its gRPC server on, on a port of its own (``Running.grpc``)."""

    @contextmanager
    def start(s: Start) -> Iterator[Running]:
        env = {"INFERENCE_BIND": "127.0.0.1:{port}", "INFERENCE_MODEL_ROOT": str(s.models),
               "PYTHONPATH": str(repo)}
        grpc_address = f"127.0.0.1:{free_port()}" if grpc else None
        if grpc_address:
            env["INFERENCE_GRPC_BIND"] = grpc_address
        if s.workers:
            env["INFERENCE_WORKERS"] = str(s.workers)
        argv = [str(VENV_BIN / "gunicorn"), "-c", str(repo / "services/inference/gunicorn.conf.py")]
        with _serve(argv, env, s.logs / f"{name}.log", s, cwd=repo, metrics=True) as running:
            running.grpc = grpc_address
            yield running

    return start


def _stack_skip() -> str | None:
    if os.environ.get("BENCH_STACK_URL"):
        return None
    if not GATEWAY_CONF.exists():
        return f"skipped: {GATEWAY_CONF.relative_to(REPO)} does not exist yet (the gateway is not merged)"
    return None


@contextmanager
def _stack(s: Start) -> Iterator[Running]:
    metrics = [u.rstrip("/") for u in os.environ.get("BENCH_STACK_METRICS", "").split(",") if u]
    if os.environ.get("BENCH_STACK_URL"):
        yield Running(os.environ["BENCH_STACK_URL"].rstrip("/"), metrics)
        return
    run_dir = s.logs / "stack-run"
    command = (os.environ.get("BENCH_STACK_COMMAND") or STACK_COMMAND).format(
        port="{port}", model_root=shlex.quote(str(s.models)), python=shlex.quote(sys.executable),
        run_dir=shlex.quote(str(run_dir)))
    with _serve(["bash", "-c", f"exec {command}"], {}, s.logs / "stack.log", s) as running:
        state = run_dir / "stack.json"  # written once every piece answered ready
        deadline = time.monotonic() + 30
        while not metrics and not state.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        facts = json.loads(state.read_text()) if state.exists() else {}
        running.metrics_urls = metrics or facts.get("inference", [])
        running.concurrency = facts.get("max_inflight")
        yield running


def _gateway_skip() -> str | None:
    return None if GATEWAY_CONF.exists() else f"skipped: {GATEWAY_CONF.relative_to(REPO)} does not exist"


@contextmanager
def _gateway(s: Start) -> Iterator[Running]:
    """The gateway alone in front of the service as target (3) runs it: the hop's cost."""
    with _inference("gateway-upstream")(s) as upstream:
        routes = s.logs / "gateway-routes.yaml"
        backend = upstream.url.removeprefix("http://")
        routes.write_text(json.dumps({"models": {name: {"backends": [backend]} for name in s.bodies}}))
        argv = [str(VENV_BIN / "gunicorn"), "-c", str(GATEWAY_CONF)]
        env = {"GATEWAY_BIND": "127.0.0.1:{port}", "GATEWAY_ROUTES_FILE": str(routes)}
        with _serve(argv, env, s.logs / "gateway.log", s) as running:
            running.metrics_urls = upstream.metrics_urls
            yield running


NAIVE = Target("naive", "(2) naive Flask + model.predict", _baseline("naive_server"))
TUNED = Target("tuned", "Flask + tf.function + orjson", _baseline("tuned_server"))
INFERENCE = Target("inference", "(3) inference service", _inference("inference", grpc=True))
INFERENCE_V2 = Target("inference-v2", "(3) inference service, V2 binary", _inference("inference-v2"),
                      protocol=V2_BINARY)
# The hop and the whole path cost the same per request whatever the model: measured on digits,
# where the fixed per-request costs show most, which keeps the default run within 10 minutes.
GATEWAY = Target("gateway", "(3) via the gateway", _gateway, _gateway_skip, models=("digits",))
STACK = Target("stack", "(4) nginx → gateway → inference", _stack, _stack_skip, models=("digits",))
TARGETS = {t.key: t for t in (NAIVE, TUNED, INFERENCE, INFERENCE_V2, GATEWAY, STACK)}


def compare_target(repo: Path) -> Target:
    """The inference service from another checkout (``--compare-to``): before/after in one run."""
    return Target("compare", f"(3) inference service @ {repo.name}", _inference("compare", repo.resolve()))
