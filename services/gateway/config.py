"""Gateway settings, from ``GATEWAY_*`` environment variables.

``python -m services.gateway.config`` prints this table for the docs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.common import settings
from services.common.settings import setting

PREFIX = "GATEWAY_"


@dataclass(frozen=True)
class GatewaySettings:
    bind: str = setting("127.0.0.1:8000", "Address Gunicorn listens on (`host:port`).")
    grpc_bind: str = setting(
        "", "Address (`host:port`) of the gRPC front door: TF Serving's `PredictionService` and "
        "`ModelService`, the Open Inference Protocol's `GRPCInferenceService` and `grpc.health.v1`, "
        "routed like HTTP to each replica's gRPC port (from its `/readyz`). Every worker serves "
        "it on the one port (`SO_REUSEPORT`); empty = off."
    )
    grpc_channels: int = setting(
        8, "gRPC channels (connections) each worker keeps to each replica: the replica's kernel "
        "spreads connections, not calls, over its workers.", minimum=1,
    )
    routes_file: str = setting(
        "", "YAML routes file: per model, its inference backends and optional canary weights "
        "(required). Re-read when it changes, and on SIGHUP."
    )
    api_keys: tuple[str, ...] = setting(
        (), "Comma-separated API keys. Auth is on when this or `GATEWAY_API_KEYS_FILE` is set."
    )
    api_keys_file: str = setting(
        "", "File of API keys, one per line (`#` comments), e.g. a mounted Secret; re-read when "
        "it changes. Combined with `GATEWAY_API_KEYS`."
    )
    admin_keys: tuple[str, ...] = setting(
        (), "Comma-separated admin keys: the only keys Triton's repository control "
        "(`/v2/repository/models/<m>/load|unload`) accepts, and no good for model calls. "
        "Unset (and no `GATEWAY_ADMIN_KEYS_FILE`): those calls get 403."
    )
    admin_keys_file: str = setting(
        "", "File of admin keys, one per line, e.g. a mounted Secret; re-read when it changes."
    )
    rate_limit: float = setting(
        0.0, "Requests per second allowed per API key (shared by all workers); 0 = no limit. "
        "With auth off, one limit for all requests.", minimum=0.0,
    )
    rate_burst: int = setting(
        0, "Requests a key may send at once above its rate; 0 = one second's worth.", minimum=0
    )
    workers: int = setting(2, "Gunicorn worker processes.", minimum=1)
    threads: int = setting(
        32, "Threads per worker: each waits on one upstream call, so this bounds a worker's "
        "concurrent requests.", minimum=1,
    )
    timeout: int = setting(30, "Gunicorn worker timeout (a stuck main loop), seconds.", minimum=1)
    graceful_timeout: int = setting(
        25, "Seconds a stopping worker gets to finish in-flight requests.", minimum=0
    )
    keepalive: int = setting(
        75, "Keep-alive seconds; longer than the proxy's upstream idle timeout (nginx: 60).",
        minimum=0,
    )
    request_timeout: float = setting(
        30.0, "Default deadline of a request, seconds; past it the client gets 504.",
        minimum=0.001,
    )
    max_request_timeout: float = setting(
        60.0, "Largest deadline a client may ask for with the `X-Request-Timeout` header.",
        minimum=0.001,
    )
    queue_budget_ms: float = setting(
        500.0, "A request that waited longer for a worker thread gets 503 + Retry-After at once "
        "(overload: shed early instead of queueing).", minimum=1.0,
    )
    connect_timeout: float = setting(
        1.0, "Seconds to open a connection to a backend before trying another replica.",
        minimum=0.001,
    )
    max_body_bytes: int = setting(
        8 * 1024 * 1024, "Largest request body accepted; larger ones get 413 (a gRPC message: "
        "RESOURCE_EXHAUSTED).", minimum=1
    )
    health_interval: float = setting(
        1.0, "Seconds between readiness probes of each backend (`/readyz`).", minimum=0.05
    )
    dns_refresh: float = setting(
        5.0, "Seconds between re-resolutions of backend host names (e.g. a headless Service).",
        minimum=0.1,
    )
    routes_poll: float = setting(
        1.0, "Seconds between checks of the routes and key files for changes; 0 = only SIGHUP.",
        minimum=0.0,
    )
    drain_file: str = setting(
        "", "File whose appearance means this pod is about to stop: from then on `/readyz` answers 503 "
        "and every response carries `Connection: close`, while requests are still served. The "
        "chart's preStop hook creates it; removed at start; empty = off."
    )
    access_log: bool = setting(
        True, "One JSON line per request on the log (model, version, backend, retry, caller). "
        "Behind nginx, which logs every request too, the chart and `make run` turn it off."
    )
    status_page: bool = setting(
        False, "Serve the live status page `/status` (and its data, `/status.json`): every routed "
        "model, its canary weights, each replica's state, and charts of the last minutes' request "
        "rate, 5xx ratio and upstream p99. Read-only, and open without an API key when on, like "
        "`/metrics`; off, both answer 404. nginx never proxies them: reach the gateway itself "
        "(e.g. `kubectl port-forward`)."
    )
    log_level: str = setting("info", "Log level: debug, info, warning, error.")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.api_keys_file)

    @property
    def burst(self) -> float:
        """Bucket size of the rate limit: the configured burst, else one second's worth."""
        return float(self.rate_burst or max(1, math.ceil(self.rate_limit)))


def load_settings(**overrides: object) -> GatewaySettings:
    result = settings.load(GatewaySettings, PREFIX, **overrides)
    if not result.routes_file:
        raise settings.SettingsError(f"{PREFIX}ROUTES_FILE is required: the YAML file of routes")
    if set(result.admin_keys) & set(result.api_keys):
        raise settings.SettingsError(
            f"{PREFIX}ADMIN_KEYS and {PREFIX}API_KEYS share a key: an admin key must be its own"
        )
    return result


if __name__ == "__main__":
    print(settings.describe(GatewaySettings, PREFIX))
