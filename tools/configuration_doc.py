"""Print docs/configuration.md from the settings each service declares (`make docs`)."""

from __future__ import annotations

from services.common.settings import describe
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
    ]
    return "\n".join(sections) + "\n"


if __name__ == "__main__":
    print(render(), end="")
