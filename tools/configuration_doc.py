"""Print docs/configuration.md from the settings each service declares (`make docs`)."""

from __future__ import annotations

from services.common.settings import describe
from services.gateway import config as gateway_config
from services.inference import config as inference_config

HEADER = """# Configuration

Every setting is an environment variable with a default; the services read them once at start
and refuse to start, naming the variable, when a value does not parse. This page is generated
from the code (`make docs`); a test fails when it is out of date.
"""


def render() -> str:
    sections = [
        HEADER,
        "## Inference service\n",
        describe(inference_config.InferenceSettings, inference_config.PREFIX),
        "",
        "TensorFlow's intra-op thread pool is sized per worker from the CPUs the process may use "
        "(affinity mask and cgroup quota) divided by `INFERENCE_WORKERS`, so workers do not "
        "oversubscribe the cores; the inter-op pool is one thread.",
        "",
        "## Gateway service\n",
        describe(gateway_config.GatewaySettings, gateway_config.PREFIX),
        "",
        "The routes file is YAML: `models: {<name>: {backends: [\"host:port\", ...], "
        "versions: {\"<v>\": <weight>, ...}}}`; a host name stands for every address it resolves "
        "to. API keys are sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`; a client may "
        "shorten or extend its deadline with `X-Request-Timeout: <seconds>`, up to "
        "`GATEWAY_MAX_REQUEST_TIMEOUT`.",
    ]
    return "\n".join(sections) + "\n"


if __name__ == "__main__":
    print(render(), end="")
