"""`python -m stack`: nginx on 127.0.0.1:PORT (HTTP) and 127.0.0.1:GRPC_PORT (gRPC) → gateway → N
inference replicas, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import yaml

from services.common import settings
from services.gateway.config import PREFIX as GATEWAY_PREFIX
from services.gateway.config import GatewaySettings
from stack import nginx_config
from stack.launch import STATE_FILE, answers_ok, claim, free_port
from stack.supervisor import Service, Supervisor

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NGINX_PRIORITY = 10  # nice levels: the tier that refuses load gets a CPU first (supervisor.raise_session_priority)


def find_nginx() -> str:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        sys.exit("nginx is not installed: apt-get install nginx-light (make run does it as root)")
    return nginx


def model_names(root: Path) -> list[str]:
    if not root.is_dir():
        sys.exit(f"no model directory at {root}: `make model` trains the default one")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def gateway_concurrency() -> int:
    """Requests the gateway forwards at once: its workers x threads (GATEWAY_* settings)."""
    gateway = settings.load(GatewaySettings, GATEWAY_PREFIX)
    return gateway.workers * gateway.threads


def build(args: argparse.Namespace) -> tuple[Supervisor, dict]:
    run_dir = args.run_dir.resolve()
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model_root = args.model_root.resolve()
    names = model_names(model_root)
    if not names:
        sys.exit(f"no models under {model_root}: run `make model` first")

    services: list[Service] = []
    replicas = []
    replicas_grpc = []
    for index in range(1, args.replicas + 1):
        port, grpc_port = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        replicas.append(f"127.0.0.1:{port}")
        replicas_grpc.append(f"127.0.0.1:{grpc_port}")
        services.append(Service(
            name=f"inference-{index}",
            argv=[str(BIN / "gunicorn"), "-c", str(REPO / "services/inference/gunicorn.conf.py")],
            env={
                "INFERENCE_BIND": f"127.0.0.1:{port}",
                # Its /readyz tells the gateway this port: the routes name only the HTTP one.
                "INFERENCE_GRPC_BIND": f"127.0.0.1:{grpc_port}",
                "INFERENCE_MODEL_ROOT": str(model_root),
                "INFERENCE_WORKERS": str(args.inference_workers),
            },
            ready=lambda url=url: answers_ok(f"{url}/readyz"),
            log_path=logs / f"inference-{index}.log",
        ))

    routes = {"models": {name: {"backends": replicas} for name in names}}
    routes_file = run_dir / "routes.yaml"
    routes_file.write_text(yaml.safe_dump(routes, sort_keys=True))
    gateway_port, gateway_grpc_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    services.append(Service(
        name="gateway",
        argv=[str(BIN / "gunicorn"), "-c", str(REPO / "services/gateway/gunicorn.conf.py")],
        # One access log line per request: nginx's (logs/nginx-access.log). GATEWAY_ACCESS_LOG=1
        # in the environment adds the gateway's own, with model, version and replica.
        env={"GATEWAY_BIND": f"127.0.0.1:{gateway_port}", "GATEWAY_ROUTES_FILE": str(routes_file),
             "GATEWAY_GRPC_BIND": f"127.0.0.1:{gateway_grpc_port}",
             "GATEWAY_ACCESS_LOG": os.environ.get("GATEWAY_ACCESS_LOG", "0")},
        ready=lambda: answers_ok(f"{gateway_url}/readyz"),
        log_path=logs / "gateway.log",
    ))

    scratch = None
    if os.geteuid() == 0:
        # A root nginx master runs its workers as "nobody", which may not reach run_dir (a
        # pytest tmp dir is 0700): request bodies over 1 MiB then failed with a 500. Their
        # scratch space is a directory of nobody's own under /tmp instead.
        scratch = Path(tempfile.mkdtemp(prefix="modelserver-nginx-"))
    settings = nginx_config.NginxSettings(
        listen=f"127.0.0.1:{args.port}",
        # Listed several times, as in the chart: nginx tries each entry at most once per
        # request, and a gateway worker killed under load leaves dead keep-alive connections
        # behind, so a retry can meet one too (two entries still let 1 in 600 requests fail).
        upstreams=[f"127.0.0.1:{gateway_port}"] * nginx_config.UPSTREAM_COPIES,
        grpc_listen=f"127.0.0.1:{args.grpc_port}",
        grpc_upstreams=[f"127.0.0.1:{gateway_grpc_port}"] * nginx_config.UPSTREAM_COPIES,
        temp_dir=scratch,
        run_dir=run_dir / "nginx",
        access_log=f"{logs / 'nginx-access.log'} json",
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        # No queue in front of the gateway's threads: on one machine the tiers share the
        # cores, and a queue there is only drained as fast as the busy gateway gets CPU
        # (docs/architecture.md, "Admission").
        max_inflight=args.max_inflight or gateway_concurrency(),
        client_max_body_size=args.max_body,
    )
    conf = nginx_config.write(settings)
    if scratch is not None:
        nobody = pwd.getpwnam("nobody").pw_uid
        for path in [scratch, *scratch.iterdir()]:
            os.chown(path, nobody, -1)
    url = f"http://127.0.0.1:{args.port}"
    services.append(Service(
        name="nginx",
        argv=[find_nginx(), "-e", "stderr", "-p", str(settings.run_dir), "-c", str(conf), "-g", "daemon off;"],
        env={},
        ready=lambda: answers_ok(f"{url}/nginx-healthz") and answers_ok(f"{url}/readyz"),
        log_path=logs / "nginx.log",
        stop_signal=signal.SIGQUIT,  # nginx's graceful shutdown
        priority=NGINX_PRIORITY,
    ))
    state = {
        "url": url,
        "grpc": f"127.0.0.1:{args.grpc_port}",
        "launcher_pid": os.getpid(),
        "model_root": str(model_root),
        "logs": str(logs),
        "inference": [f"http://{r}" for r in replicas],
        "gateway": gateway_url,
        "gateway_grpc": f"127.0.0.1:{gateway_grpc_port}",
        "inference_grpc": replicas_grpc,
        "nginx_scratch": str(settings.scratch),
        "max_inflight": settings.max_inflight,
    }
    return Supervisor(services, ready_timeout=args.ready_timeout), state


def _running_url(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / STATE_FILE).read_text())["url"]
    except (OSError, ValueError, KeyError):
        return "not ready yet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8080)))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GRPC_PORT", 8500)))
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("INFERENCE_REPLICAS", 2)))
    parser.add_argument("--inference-workers", type=int, default=int(os.environ.get("STACK_INFERENCE_WORKERS", 1)))
    parser.add_argument("--model-root", type=Path, default=Path(os.environ.get("MODEL_ROOT", "models")))
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("STACK_RUN_DIR", ".run/stack")))
    parser.add_argument("--rate-limit", default=os.environ.get("NGINX_RATE_LIMIT", "2000r/s"))
    parser.add_argument("--rate-burst", type=int, default=int(os.environ.get("NGINX_RATE_BURST", 4000)))
    parser.add_argument("--max-body", default=os.environ.get("NGINX_MAX_BODY", "8m"))
    parser.add_argument("--max-inflight", type=int, default=int(os.environ.get("NGINX_MAX_INFLIGHT", 0)),
                        help="requests nginx lets through at once (default: the gateway's workers x threads)")
    parser.add_argument("--ready-timeout", type=float, default=180)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="stack: %(message)s")
    if claim(args.run_dir) is None:  # held until this process exits
        logging.error("a stack is already running with run directory %s (its URL: %s); stop it, or give "
                      "this one another with --run-dir or STACK_RUN_DIR", args.run_dir, _running_url(args.run_dir))
        return 1

    supervisor, state = build(args)

    def record(service: Service | None = None) -> None:
        """stack.json: the URL and every process id (rewritten when one is restarted)."""
        for each in supervisor.services:
            state[f"{each.name}_pid"] = each.pid
        staging = args.run_dir / f"{STATE_FILE}.tmp"
        staging.write_text(json.dumps(state, indent=2))
        staging.replace(args.run_dir / STATE_FILE)

    supervisor.on_restart = record
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.request_stop())
    try:
        supervisor.start_all()
        record()
        print(
            f"\nmodelserver is up: {state['url']}  (logs: {state['logs']})\n"
            f"  curl -s -d @examples/digit-0.json {state['url']}/v1/models/digits:predict\n"
            f"  curl -s -H 'Content-Type: application/json' -d @examples/digit-0-v2.json "
            f"{state['url']}/v2/models/digits/infer\n"
            f"  gRPC (TF Serving's PredictionService, the V2 GRPCInferenceService): {state['grpc']}\n"
            f"  .venv/bin/python examples/grpc_client.py {state['grpc']}\n"
            f"  Prometheus metrics (not served through nginx): {state['gateway']}/metrics, "
            + ", ".join(f"{replica}/metrics" for replica in state["inference"]) + "\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        supervisor.watch()
        return 0
    except RuntimeError as error:
        logging.error("%s", error)
        return 1
    finally:
        supervisor.stop_all()
        if Path(state["nginx_scratch"]).name.startswith("modelserver-nginx-"):
            shutil.rmtree(state["nginx_scratch"], ignore_errors=True)
        (args.run_dir / STATE_FILE).unlink(missing_ok=True)
        logging.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
