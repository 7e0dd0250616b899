"""Inference settings, from ``INFERENCE_*`` environment variables.

``python -m services.inference.config`` prints this table for the docs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.common import naturals, settings
from services.common.settings import setting

PREFIX = "INFERENCE_"


@dataclass(frozen=True)
class InferenceSettings:
    model_root: Path = setting(
        Path("models"), "Directory of models: `<name>/<integer version>/` with `model.keras` or a SavedModel.",
        aliases=("MODEL_ROOT",),
    )
    bind: str = setting("127.0.0.1:8080", "Address Gunicorn listens on (`host:port`).")
    grpc_bind: str = setting(
        "", "Address (`host:port`) of the gRPC server every worker runs beside HTTP, all workers on "
        "one port (`SO_REUSEPORT`): TF Serving's `PredictionService` and `ModelService`, the Open "
        "Inference Protocol's `GRPCInferenceService` and `grpc.health.v1.Health`. `/readyz` names "
        "its port (`grpc_port`). Messages are limited to `INFERENCE_MAX_BODY_BYTES`. Empty = off."
    )
    workers: int = setting(
        2, "Gunicorn worker processes; each loads every model (memory = workers x models).",
        minimum=1,
    )
    threads: int = setting(
        32, "Threads per worker. Concurrent requests in one worker are what batching merges.",
        minimum=1,
    )
    tf_threads: int = setting(
        0, "TensorFlow intra-op threads per worker; 0 = CPUs available / workers (at least 1).",
        minimum=0,
    )
    timeout: int = setting(
        60, "Gunicorn worker timeout, seconds; also bounds model loading at start.", minimum=1
    )
    graceful_timeout: int = setting(
        25, "Seconds a stopping worker gets to finish in-flight requests.", minimum=0
    )
    keepalive: int = setting(
        75, "Keep-alive seconds; longer than the proxy's upstream idle timeout (nginx: 60).",
        minimum=0,
    )
    max_body_bytes: int = setting(
        8 * 1024 * 1024, "Largest request body (or gRPC message) accepted; larger ones get 413 "
        "(gRPC: RESOURCE_EXHAUSTED).", minimum=1
    )
    request_timeout: float = setting(
        30.0, "Seconds a request may wait for its result before it gets 504.", minimum=0.001
    )
    max_batch_size: int = setting(
        64, "Most rows merged into one model call.", minimum=1
    )
    max_latency_ms: float = setting(
        0.0, "How long a batch may wait for company; 0 = a lone request runs at once.",
        minimum=0.0,
    )
    queue_budget_ms: float = setting(
        1000.0,
        "Admission budget: a request whose expected queue wait exceeds it gets 503 + Retry-After.",
        minimum=1.0,
    )
    max_queue_rows: int = setting(
        4096, "Hard bound on rows waiting per model version, whatever the expected wait.",
        minimum=1,
    )
    version_policy: str = setting(
        "latest:2", "Versions kept loaded per model: `latest:N` or `all`."
    )
    poll_seconds: float = setting(
        2.0, "How often the model root is rescanned for new, changed or removed versions; 0 = never.",
        minimum=0.0,
    )
    model_config_file: str = setting(
        "", "TensorFlow Serving's model config file (`--model_config_file`, the `model_config_list` "
        "text format): the models to serve, each with its `base_path`, version policy and version "
        "labels; replaces the scan of the model root. A relative `base_path` is under the file's "
        "directory. Empty = scan `INFERENCE_MODEL_ROOT`."
    )
    model_config_poll_seconds: float = setting(
        2.0, "How often the model config file is re-read for changes (TF Serving's "
        "`--model_config_file_poll_wait_seconds`); a bad edit is refused and the config in force "
        "stays. 0 = read once at start.",
        minimum=0.0,
    )
    allow_signature_change: bool = setting(
        False, "Let a new version change input/output names, dtypes or shapes (off: it is refused)."
    )
    allow_nonfinite: bool = setting(
        False, "Accept NaN/Infinity in inputs (TF Serving's JSON tokens); off: 400."
    )
    repository_control: str = setting(
        "loopback", "Who may call Triton's repository control, `POST /v2/repository/models/<m>/"
        "load|unload` (admin calls, acting on every worker): `off` (403 for all), `loopback` "
        "(clients on 127.0.0.1/::1 only: a local gateway, a developer's tritonclient) or `on` "
        "(anyone who reaches the port: for a network that only lets the gateway in). The index "
        "is open to all."
    )
    drain_file: str = setting(
        "", "File whose appearance means this pod is about to stop: from then on `/readyz` answers 503 "
        "and every response carries `Connection: close`, while requests are still served. The "
        "chart's preStop hook creates it; removed at start; empty = off."
    )
    access_log: bool = setting(
        False, "One JSON line per model call on the log (request and trace ids, model, version, "
        "status, time). Off: nginx logs every request already; turn it on to follow one inside."
    )
    log_level: str = setting("info", "Log level: debug, info, warning, error.")

    @property
    def kept_versions(self) -> int | None:
        """How many newest versions to keep loaded; None keeps all."""
        policy = self.version_policy.strip().lower()
        if policy == "all":
            return None
        name, _, count = policy.partition(":")
        kept = naturals.parse(count)
        if name != "latest" or kept is None or kept < 1:
            raise settings.SettingsError(
                f"{PREFIX}VERSION_POLICY={self.version_policy!r}: expected latest:N (N >= 1) or all"
            )
        return kept

    def tf_intra_op_threads(self) -> int:
        if self.tf_threads:
            return self.tf_threads
        return max(1, available_cpus() // self.workers)


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, and a cgroup CPU quota when one is set."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


REPOSITORY_CONTROL = ("off", "loopback", "on")


def load_settings(**overrides: object) -> InferenceSettings:
    result = settings.load(InferenceSettings, PREFIX, **overrides)
    result.kept_versions  # validate early  # noqa: B018
    if result.model_config_file:  # a bad file stops the start, with its message, once
        from services.inference import model_config_file

        try:
            text = Path(result.model_config_file).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise settings.SettingsError(
                f"{PREFIX}MODEL_CONFIG_FILE: cannot read {result.model_config_file}: {error}"
            ) from None
        try:
            model_config_file.parse(text, result.model_config_file, default_kept=result.kept_versions)
        except model_config_file.ModelConfigFileError as error:
            raise settings.SettingsError(f"{PREFIX}MODEL_CONFIG_FILE: {error}") from None
    if result.repository_control not in REPOSITORY_CONTROL:
        raise settings.SettingsError(
            f"{PREFIX}REPOSITORY_CONTROL={result.repository_control!r}: expected one of "
            + ", ".join(REPOSITORY_CONTROL)
        )
    return result


if __name__ == "__main__":
    print(settings.describe(InferenceSettings, PREFIX))
