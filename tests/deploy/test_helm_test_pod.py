"""The `helm test` pod's script (helm/modelserver/files/helm-test.py), run against a stand-in
for nginx: it must pass on one good prediction, send the API key, and fail otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler

import pytest

from tests.deploy import chart
from tests.deploy.chart import CHART
from tests.support.standin import serving

SCRIPT = CHART / "files/helm-test.py"


class StandIn(BaseHTTPRequestHandler):
    predictions = 1
    required_key = ""
    seen: list[dict] = []

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        return not self.required_key or self.headers.get("Authorization") == f"Bearer {self.required_key}"

    def do_GET(self):  # noqa: N802
        if not self._authorized():
            return self._reply(401, {"error": "missing API key"})
        if self.path == "/v2/models/digits":
            return self._reply(
                200, {"name": "digits", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]}
            )
        self._reply(404, {"error": "no such path"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if not self._authorized():
            return self._reply(401, {"error": "missing API key"})
        if self.path == "/v1/models/digits:predict":
            return self._reply(200, {"predictions": [[0.1] * 10] * self.predictions})
        self._reply(404, {"error": "no such path"})

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    StandIn.predictions, StandIn.required_key, StandIn.seen = 1, "", []
    with serving(StandIn) as url:
        yield url


def run(base_url, **env):
    settings = {"BASE_URL": base_url, "MODEL": "digits", "ATTEMPTS": "2", "RETRY_SECONDS": "0", **env}
    return subprocess.run([sys.executable, "-I", "-c", SCRIPT.read_text()], env=settings,
                          capture_output=True, text=True, timeout=60)


def test_one_prediction_of_the_models_input_shape_passes(server):
    result = run(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: digits predicted" in result.stdout
    (body,) = StandIn.seen
    (instance,) = body["instances"]
    assert len(instance) == 8 and len(instance[0]) == 8 and instance[0][0] == [0.0]


def test_it_sends_the_first_api_key(server):
    StandIn.required_key = "k-one"
    assert run(server, API_KEYS="k-one\nk-two\n").returncode == 0
    assert run(server, API_KEYS="k-two\n").returncode == 1


@pytest.mark.parametrize("predictions", [0, 2])
def test_a_wrong_answer_fails(server, predictions):
    StandIn.predictions = predictions
    result = run(server)
    assert result.returncode == 1 and "expected one prediction" in result.stdout


def test_an_unreachable_nginx_fails():
    assert run("http://127.0.0.1:9").returncode == 1


def test_the_hook_pod_runs_exactly_this_script():
    (pod,) = chart.of_kind(chart.hooks("defaults"), "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python3", "-c"]
    assert container["args"] == [SCRIPT.read_text()]
