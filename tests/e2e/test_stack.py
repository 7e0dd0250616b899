"""The whole path over HTTP: client → nginx → gateway → inference replicas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from stack.load import Load
from tests.e2e.conftest import wait_ready
from tests.support import models
from tests.support.servers import REPO, free_port

pytestmark = pytest.mark.slow


def v2_payload(rows: np.ndarray) -> dict:
    return {"inputs": [{"name": "pixels", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}


def assert_json_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert isinstance(response.json()["error"], str)


def test_predictions_through_the_load_balancer_are_correct(stack, digits_data):
    url, _ = stack
    x, y = digits_data
    response = requests.post(f"{url}/v1/models/digits:predict", json={"instances": x.tolist()}, timeout=60)
    assert response.status_code == 200, response.text[:300]
    assert response.headers.get("X-Request-ID")
    predicted = np.argmax(np.array(response.json()["predictions"]), axis=1)
    assert (predicted == y).mean() >= 0.95
    v2 = requests.post(f"{url}/v2/models/digits/infer", json=v2_payload(x[:20]), timeout=30).json()
    v2_labels = np.argmax(np.array(v2["outputs"][0]["data"]).reshape(20, 10), axis=1)
    np.testing.assert_array_equal(v2_labels, predicted[:20])


def test_tritonclient_through_the_load_balancer(stack, digits_data):
    import tritonclient.http as triton

    url, _ = stack
    client = triton.InferenceServerClient(url=url.split("://", 1)[1])
    x = digits_data[0][:4]
    tensor = triton.InferInput("pixels", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("digits", [tensor], outputs=[triton.InferRequestedOutput("probabilities")])
    assert result.as_numpy("probabilities").shape == (4, 10)
    client.close()


def test_request_ids_pass_through(stack):
    url, _ = stack
    response = requests.post(f"{url}/v1/models/digits:predict", data=open_example(), headers={"X-Request-ID": "e2e-42"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "e2e-42"


def open_example() -> bytes:
    from tests.support.servers import REPO

    return (REPO / "examples/digit-0.json").read_bytes()


@pytest.mark.parametrize(
    "path, kwargs, status",
    [
        ("/v1/models/digits:predict", {"data": b"{oops"}, 400),
        ("/v1/models/digits:predict", {"json": {"instances": [[1, 2, 3]]}}, 400),
        ("/v1/models/unknown:predict", {"json": {"instances": [[1]]}}, 404),
        ("/v1/models/digits/versions/99:predict", {"json": {"instances": [[1]]}}, 404),
        ("/v1/models/digits:predict", {"data": b"x", "headers": {"Content-Type": "text/csv"}}, 415),
        ("/v1/models/digits:predict", {"data": b" " * (9 * 1024 * 1024)}, 413),
    ],
)
def test_bad_inputs_get_the_services_json_errors_through_nginx(stack, path, kwargs, status):
    url, _ = stack
    assert_json_error(requests.post(f"{url}{path}", timeout=30, **kwargs), status)


def test_metrics_are_not_public_through_nginx(stack):
    """Scrapers reach the gateway and inference directly; the entry point answers 404 itself."""
    url, _ = stack
    for path in ("/metrics", "/metrics?format=text", "//metrics"):
        response = requests.get(f"{url}{path}", timeout=10)
        assert_json_error(response, 404)
        assert "modelserver_" not in response.text


def test_every_replica_takes_traffic(local_stack):
    url, local = local_stack

    def served(replica: str) -> float:
        text = requests.get(f"{replica}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("modelserver_requests_total{"))

    replicas = local.state["inference"]
    before = [served(r) for r in replicas]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(
            lambda _: requests.post(f"{url}/v1/models/digits:predict", data=open_example(), timeout=30).status_code,
            range(200),
        ))
    assert statuses == [200] * 200
    gained = [served(r) - b for r, b in zip(replicas, before, strict=True)]
    assert all(g >= 20 for g in gained), f"requests per replica: {gained}"


def test_a_second_launcher_on_the_same_run_directory_is_refused_and_the_first_stack_serves_on(local_stack):
    """Two stacks in one run directory rewrote each other's nginx config and pid files: the
    first one's nginx restarted under load and answered errors afterwards."""
    url, local = local_stack
    before = local.state
    config = (local.run_dir / "nginx" / "nginx.conf").read_bytes()
    with Load(predict_session(url), concurrency=2, max_seconds=60) as load:
        second = subprocess.run(
            [sys.executable, "-m", "stack", "--port", str(free_port()), "--model-root", str(local.model_root),
             "--run-dir", str(local.run_dir)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        load.wait_for(50)
    assert second.returncode == 1, second.stderr[-2000:]
    assert f"a stack is already running with run directory {local.run_dir}" in second.stderr
    assert before["url"] in second.stderr
    result = load.result
    assert result.failures == 0 and result.total >= 50, (result.statuses, result.errors)
    assert local.state == before  # same processes, same URL
    assert (local.run_dir / "nginx" / "nginx.conf").read_bytes() == config
    assert requests.post(f"{url}/v1/models/digits:predict", data=open_example(), timeout=30).status_code == 200


def predict_session(url: str):
    body = open_example()

    def send(session: requests.Session) -> requests.Response:
        return session.post(f"{url}/v1/models/digits:predict", data=body, timeout=30)

    return send


def test_sigkill_of_an_inference_replica_under_load(local_stack):
    url, local = local_stack
    victim = local.state["inference-1_pid"]
    with Load(predict_session(url), concurrency=8, max_seconds=60) as load:
        load.wait_for(100)
        os.kill(victim, signal.SIGKILL)
        killed_at = load.result.total
        load.wait_for(killed_at + 400)
    result = load.result
    assert result.failures == 0, (result.statuses, result.errors)
    # The launcher restarts the replica, as a Deployment would, and it serves again.
    replica = local.state["inference"][0]
    wait_ready(replica, timeout=90)
    assert requests.post(f"{replica}/v1/models/digits:predict", data=open_example(), timeout=30).status_code == 200


def test_model_upgrade_under_load(local_stack, digits_version):
    url, local = local_stack

    def version_of(response: requests.Response) -> str:
        return response.json()["model_version"]

    body = {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0.25] * 64}]}

    def send(session: requests.Session) -> requests.Response:
        return session.post(f"{url}/v2/models/digits/infer", json=body, timeout=30)

    old = models.newest_version(local.model_root, "digits")  # other tests may have upgraded it
    new = str(old + 1)
    with Load(send, concurrency=8, max_seconds=90, classify=version_of) as load:
        load.wait_for(100)
        models.copy_version(digits_version, local.model_root, "digits", old + 1)
        # Until every replica answers with the new version only (no other for 1.5 s).
        switched_after = load.wait_until_only(new, timeout=20)
    result = load.result
    assert result.failures == 0, (result.statuses, result.errors)
    assert switched_after < 10, f"version {new} served everywhere only after {switched_after:.1f}s"
    assert result.seen[str(old)] > 0 and result.seen[new] > 0
