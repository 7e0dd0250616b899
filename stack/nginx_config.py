"""Render the nginx template shared with the Helm chart.

The template lives in the chart (``helm/modelserver/files/nginx.conf.template``) because Helm can
only read files inside a chart; the local stack reads the same file, so the configuration CI
tests is the configuration that runs in the cluster. Placeholders are ``${UPPER_CASE}`` (nginx's
own variables are lower case, so the two never collide).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "helm/modelserver/files/nginx.conf.template"
# How often the one gateway address is listed upstream (see stack/__main__.py and the chart).
UPSTREAM_COPIES = 4
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
PLACEHOLDERS = (
    "WORKER_PROCESSES", "PID_FILE", "ERROR_LOG", "ACCESS_LOG", "TEMP_DIR", "LISTEN",
    "UPSTREAM_SERVERS", "CLIENT_MAX_BODY_SIZE", "PROXY_READ_TIMEOUT", "RATE_LIMIT", "RATE_BURST",
    "CLIENT_KEEPALIVE_TIME", "GRPC_LISTEN", "GRPC_UPSTREAM_SERVERS",
)


@dataclass(frozen=True)
class NginxSettings:
    listen: str  # "127.0.0.1:8080" locally, "8080" in a pod
    upstreams: Sequence[str]  # gateway addresses, host:port
    run_dir: Path  # pid file and temp files
    grpc_listen: str  # gRPC (HTTP/2): "127.0.0.1:8500" locally, "8500" in a pod
    grpc_upstreams: Sequence[str]  # the gateway's gRPC addresses, host:port
    access_log: str = "off"
    error_log: str = "stderr"
    client_max_body_size: str = "8m"
    proxy_read_timeout: str = "60s"
    rate_limit: str = "2000r/s"
    rate_burst: int = 4000
    max_inflight: int = 512  # requests at the gateway past which nginx answers 503 at once
    worker_processes: str = "auto"
    # Longest life of a client keep-alive connection; nginx's own default locally, where no
    # pod stops under a client (the chart derives it from its preStop pause).
    client_keepalive_time: str = "1h"
    temp_dir: Path | None = None  # request bodies over 1 MiB spill here; default run_dir/tmp

    @property
    def scratch(self) -> Path:
        return self.temp_dir or self.run_dir / "tmp"

    def values(self) -> dict[str, str]:
        # max_fails=0, as in the chart: a gateway listed twice must never be marked down by a
        # worker dying under a request ("no live upstreams" answered 481 requests with 502).
        # max_conns: the entries share max_inflight (the template's upstream block says why).
        def servers(addresses: Sequence[str]) -> str:
            per_entry = -(-self.max_inflight // len(addresses))
            return "\n        ".join(f"server {address} max_fails=0 max_conns={per_entry};" for address in addresses)

        return {
            "WORKER_PROCESSES": self.worker_processes,
            "PID_FILE": str(self.run_dir / "nginx.pid"),
            "ERROR_LOG": self.error_log,
            "ACCESS_LOG": self.access_log,
            "TEMP_DIR": str(self.scratch),
            "LISTEN": self.listen,
            "UPSTREAM_SERVERS": servers(self.upstreams),
            "CLIENT_MAX_BODY_SIZE": self.client_max_body_size,
            "PROXY_READ_TIMEOUT": self.proxy_read_timeout,
            "RATE_LIMIT": self.rate_limit,
            "RATE_BURST": str(self.rate_burst),
            "CLIENT_KEEPALIVE_TIME": self.client_keepalive_time,
            "GRPC_LISTEN": self.grpc_listen,
            "GRPC_UPSTREAM_SERVERS": servers(self.grpc_upstreams),
        }


def render(values: Mapping[str, str], template: str | None = None) -> str:
    """Substitute every placeholder; an unknown or missing one is an error, not a blank."""
    text = TEMPLATE.read_text() if template is None else template
    found = set(PLACEHOLDER.findall(text))
    if found != set(values):
        raise KeyError(f"template placeholders {sorted(found)} != values {sorted(values)}")
    return PLACEHOLDER.sub(lambda match: values[match[1]], text)


def write(settings: NginxSettings) -> Path:
    """Write the rendered config and its scratch directories under ``run_dir``."""
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (settings.scratch / sub).mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    path = settings.run_dir / "nginx.conf"
    path.write_text(render(settings.values()))
    return path
