"""Triton's model configuration, statistics and model repository extensions, and KServe's SDK,
against the real service with two worker processes, through the clients their users have:
tritonclient.http, Triton's perf_analyzer and KServe's InferenceRESTClient."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from bench import perf_analyzer
from tests.support import models, reporting
from tests.support.servers import VENV_BIN, connections_per_worker, start_inference

pytestmark = pytest.mark.slow

WORKERS = 2
KSERVE_PYTHON = VENV_BIN.parent / "kserve" / "bin" / "python"


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits_version, multi_version):
    root = tmp_path_factory.mktemp("triton") / "models"
    models.copy_version(digits_version, root, "digits", 1)
    models.copy_version(multi_version, root, "multi", 1)
    process, url = start_inference(root, root.parent / "server.log", env={"INFERENCE_WORKERS": str(WORKERS)})
    yield process, url
    assert process.stop() == 0, process.log_tail()


@pytest.fixture(scope="module")
def server(served):
    return served[1]


@pytest.fixture
def client(server):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.removeprefix("http://"))
    yield client
    client.close()


def held_connections(process, url: str, count: int = 8) -> list[socket.socket]:
    """``count`` keep-alive connections opened at once, which the kernel spreads over the
    workers; checked, so that what a test sends on them reaches every worker."""
    port = int(url.rsplit(":", 1)[1])
    sockets: list[socket.socket] = []
    for _ in range(8):  # a busy worker may take a whole round: open more until both hold some
        opened = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
        for sock in opened:  # a request each: a connection is a worker's once it has answered
            assert send(sock, "GET", "/healthz").startswith(b"HTTP/1.1 200")
        sockets += opened
        per_worker = connections_per_worker(process.pid, port)
        if len(per_worker) == WORKERS and min(per_worker) >= 1:
            return sockets
        time.sleep(0.2)
    raise AssertionError(f"connections never reached every worker: {per_worker}")


def send(sock: socket.socket, method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    header, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))
    while len(rest) < length:
        rest += sock.recv(65536)
    return header + b"\r\n\r\n" + rest


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


# -- model configuration ----------------------------------------------------------------------


def test_model_config_as_tritonclient_reads_it(client):
    config = client.get_model_config("digits")
    assert config["name"] == "digits" and config["platform"] == "tensorflow_keras"
    assert config["max_batch_size"] == 64  # INFERENCE_MAX_BATCH_SIZE's default
    assert config["input"] == [{
        "name": "pixels", "data_type": "TYPE_FP32", "format": "FORMAT_NONE", "dims": [8, 8, 1],
        "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False,
    }]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", [10])]
    assert config["dynamic_batching"] == {
        "preferred_batch_size": [64], "max_queue_delay_microseconds": 0, "preserve_ordering": False}
    assert config["version_policy"] == {"latest": {"num_versions": 2}}
    assert config["instance_group"][0]["count"] == WORKERS
    assert client.get_model_config("digits", "1") == config
    # Several named inputs and outputs, each with its own type: all from the model's signature.
    multi = client.get_model_config("multi")
    assert {i["name"]: i["data_type"] for i in multi["input"]} == {
        "ids": "TYPE_INT64", "flags": "TYPE_BOOL", "scale": "TYPE_FP64"}
    assert len(multi["output"]) == 2


@pytest.mark.parametrize("path", [
    "/v2/models/nope/config", "/v2/models/digits/versions/7/config", "/v2/models/digits/versions/x/config",
    "/v2/models/nope/stats", "/v2/models/digits/versions/7/stats", "/v2/models/digits/versions/²/stats",
])
def test_unknown_model_or_version_is_a_triton_404(server, path):
    response = requests.get(server + path, timeout=10)
    assert response.status_code == 404 and set(response.json()) == {"error"}, response.text


# -- statistics -------------------------------------------------------------------------------


def digits_stats(client) -> dict:
    (stats,) = client.get_inference_statistics("digits", "1")["model_stats"]
    return stats


def test_statistics_add_up_over_the_worker_processes(served, client):
    process, url = served
    sockets = held_connections(process, url)
    before = digits_stats(client)
    rows, per_connection = 3, 5
    infer = json.dumps({"inputs": [{
        "name": "pixels", "shape": [rows, 8, 8, 1], "datatype": "FP32", "data": [0.5] * (rows * 64)}]}).encode()
    try:
        for _ in range(per_connection):
            for sock in sockets:
                assert status_of(send(sock, "POST", "/v2/models/digits/infer", infer)) == 200
        bad = send(sockets[0], "POST", "/v2/models/digits/infer", b'{"inputs": [{"name": "pixels"}]}')
        assert status_of(bad) == 400
    finally:
        for sock in sockets:
            sock.close()
    after = digits_stats(client)
    sent = per_connection * len(sockets)

    def delta(stat: str) -> int:
        return after["inference_stats"][stat]["count"] - before["inference_stats"][stat]["count"]

    # Every request counted once, whichever worker served it and whichever worker answers now.
    assert delta("success") == sent and delta("fail") == 1
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert delta(phase) == sent, phase
    assert after["inference_count"] - before["inference_count"] == sent * rows
    executions = after["execution_count"] - before["execution_count"]
    assert 1 <= executions <= sent
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert abs(after["last_inference"] / 1000 - time.time()) < 60
    assert sum(b["compute_infer"]["count"] for b in after["batch_stats"]) == after["execution_count"]
    # The same from any worker: ask over fresh connections until both have answered.
    answers = {json.dumps(digits_stats(client)["inference_stats"]) for _ in range(6)}
    assert len(answers) == 1
    everything = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} == {("digits", "1"), ("multi", "1")}
    assert client.get_inference_statistics("digits")["model_stats"] == [after]


# -- model repository ---------------------------------------------------------------------------


def test_unload_and_load_reach_every_worker(served, client, request):
    process, url = served
    assert client.get_model_repository_index() == [
        {"name": "digits", "version": "1", "state": "READY", "reason": ""},
        {"name": "multi", "version": "1", "state": "READY", "reason": ""},
    ]
    sockets = held_connections(process, url)
    try:
        started = time.monotonic()
        client.unload_model("digits")
        unload_seconds = time.monotonic() - started
        # Returned only once every worker has unloaded it: none of them serves it any more.
        assert [status_of(send(s, "GET", "/v2/models/digits/ready")) for s in sockets] == [503] * len(sockets)
        assert {status_of(send(s, "GET", "/v2/models/multi/ready")) for s in sockets} == {200}
        assert not client.is_model_ready("digits")
        assert {"name": "digits", "state": "UNAVAILABLE", "reason": "unloaded"} in client.get_model_repository_index()
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200 and "digits" not in ready.json()["models"]  # the gateway stops sending
        assert requests.get(f"{url}/v1/models/digits", timeout=10).json()["ready"] is False
        started = time.monotonic()
        client.load_model("digits")
        load_seconds = time.monotonic() - started
        assert [status_of(send(s, "GET", "/v2/models/digits/ready")) for s in sockets] == [200] * len(sockets)
    finally:
        for sock in sockets:
            sock.close()
    assert client.is_model_ready("digits")
    assert {"name": "digits", "version": "1", "state": "READY", "reason": ""} in client.get_model_repository_index()
    reporting.figure(request, f"repository control over {WORKERS} workers: unload {unload_seconds:.2f} s, "
                     f"load {load_seconds:.2f} s (load + warm-up in every worker)")


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v2/repository/models/nope/load", b"", 404, "not found"),
    ("/v2/repository/models/nope/unload", b"", 404, "not found"),
    ("/v2/repository/models/digits/load", b"{bad", 400, "malformed JSON"),
    ("/v2/repository/models/digits/load", b"[1]", 400, "JSON object"),
    ("/v2/repository/models/digits/load", b'{"parameters": 3}', 400, "parameters"),
    ("/v2/repository/models/digits/load", b'{"parameters": {"config": "{}"}}', 400, "config"),
    ("/v2/repository/index", b'{"ready": "yes"}', 400, "boolean"),
])
def test_bad_repository_calls_are_4xx(server, path, body, status, fragment):
    response = requests.post(server + path, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert requests.get(f"{server}/v2/models/digits/ready", timeout=10).status_code == 200


def test_repository_index_takes_an_empty_body_or_ready(server):
    everything = requests.post(f"{server}/v2/repository/index", timeout=10).json()
    assert [e["name"] for e in everything] == ["digits", "multi"]
    ready = requests.post(f"{server}/v2/repository/index", json={"ready": True}, timeout=10).json()
    assert ready == [e for e in everything if e["state"] == "READY"]


def test_model_control_switched_off_is_403_and_the_index_stays_open(tmp_path, digits_version):
    root = tmp_path / "models"
    models.copy_version(digits_version, root, "digits", 1)
    process, url = start_inference(root, tmp_path / "server.log", env={"INFERENCE_REPOSITORY_CONTROL": "off"})
    try:
        for action in ("load", "unload"):
            response = requests.post(f"{url}/v2/repository/models/digits/{action}", timeout=10)
            assert response.status_code == 403 and "INFERENCE_REPOSITORY_CONTROL" in response.json()["error"]
        assert requests.post(f"{url}/v2/repository/index", timeout=10).json()[0]["state"] == "READY"
        assert requests.get(f"{url}/v2/models/digits/ready", timeout=10).status_code == 200
    finally:
        assert process.stop() == 0, process.log_tail()


# -- KServe's SDK, V1 and V2 --------------------------------------------------------------------


def test_kserve_inference_rest_client_v1_and_v2(server, digits_version):
    assert KSERVE_PYTHON.exists(), "KServe's SDK is missing: `make setup` installs it into .venv/kserve"
    script = Path(__file__).resolve().parents[3] / "tests" / "support" / "kserve_client.py"
    run = subprocess.run([str(KSERVE_PYTHON), str(script), server, "digits"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout)
    assert found["v1_live"] is True and found["v1_model_ready"] is True
    assert "404" in found["v1_unknown_ready"]["raised"]
    assert found["v2_live"] is True and found["v2_ready"] is True and found["v2_model_ready"] is True
    import keras

    reference = keras.saving.load_model(digits_version / "model.keras", safe_mode=True)
    expected = reference.predict(np.array(found["pixels"], np.float32), verbose=0)
    np.testing.assert_allclose(np.array(found["v1_predict"]["predictions"]), expected, atol=1e-5)
    assert found["v2_infer"]["id"] == "kserve-v2"
    np.testing.assert_allclose(np.array(found["v2_infer"]["outputs"][0]["data"]), expected, atol=1e-5)


# -- Triton's perf_analyzer ---------------------------------------------------------------------

_PA_LINE = re.compile(r"Concurrency: (\d+), throughput: ([\d.]+) infer/sec, latency (\d+) usec")


def run_perf_analyzer(url: str, model: str, concurrency: str, interval_ms: int, timeout: float) -> str:
    """perf_analyzer over HTTP, as `make bench` runs it; its output."""
    assert perf_analyzer.BINARY.exists(), "perf_analyzer is missing: `make setup` installs it (tools/perf-analyzer.sh)"
    argv = perf_analyzer.command(url, model, concurrency, interval_ms)
    run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return run.stdout


def test_perf_analyzer_measures_the_service(server, request):
    output = run_perf_analyzer(server, "digits", "1:2", 800, timeout=240)
    points = {int(c): (float(t), int(lat)) for c, t, lat in _PA_LINE.findall(output)}
    assert set(points) == {1, 2}, output[-2000:]
    assert all(throughput > 0 and latency > 0 for throughput, latency in points.values())
    # Its server-side half reads our statistics extension.
    assert re.search(r"Server:\s+Inference count: [1-9]", output), output[-2000:]
    reporting.figure(request, "perf_analyzer, digits over HTTP: " + ", ".join(
        f"c={c} {t:.0f} infer/s {lat / 1000:.1f} ms" for c, (t, lat) in sorted(points.items())))

