"""Fuzzing the inference service over HTTP from its own OpenAPI document (schemathesis), and
the regressions it found."""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import fuzz, models, reporting
from tests.support.servers import start_inference

pytestmark = pytest.mark.slow

EXAMPLES = 25  # per operation and phase; about 2,000 requests in all


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_version, multi_version):
    root = tmp_path_factory.mktemp("fuzzed") / "models"
    models.copy_version(digits_version, root, "digits", 1)
    models.copy_version(multi_version, root, "multi", 1)
    # Model control off: the fuzzer would unload the models and the rest of the run would fuzz
    # 503s (the repository calls' parsing is tested in test_triton_extensions).
    process, url = start_inference(root, root.parent / "server.log", env={"INFERENCE_REPOSITORY_CONTROL": "off"})
    yield url
    assert process.stop() == 0, process.log_tail()


def test_schemathesis_finds_no_server_error_and_every_answer_is_documented(server, tmp_path, request):
    config = fuzz.config(tmp_path / "schemathesis.toml", ["digits", "multi"],
                         ["1", "2", "01", "99999999999999999999999", "²", "١"])
    result = fuzz.run(server, tmp_path, config_file=config, max_examples=EXAMPLES, seed=8)
    reporting.figure(request, f"schemathesis, inference: {result.generated} cases, "
                     f"{len(result.failures)} failures, {len(result.errors)} errors")
    assert result.generated >= 1000, result.summary()
    assert not result.failures and not result.errors, result.summary()


@pytest.mark.parametrize("version", ["²", "١", "9" * 40])
@pytest.mark.parametrize("path", ["/v1/models/digits/versions/{v}", "/v1/models/digits/versions/{v}/metadata",
                                  "/v2/models/digits/versions/{v}", "/v2/models/digits/versions/{v}/ready"])
def test_a_version_of_unicode_digits_or_too_many_digits_is_404(server, path, version):
    # Was 500: "²".isdigit() is True and int("²") raises.
    response = requests.get(server + path.format(v=version), timeout=10)
    assert response.status_code == 404 and set(response.json()) == {"error"}, response.text


def test_a_request_line_too_long_for_gunicorn_is_a_json_400(server):
    # Was Gunicorn's HTML page: it answers what it cannot parse before our code runs.
    response = requests.get(f"{server}/v1/models/digits/versions/{'9' * 5000}", timeout=10)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert "Bad Request" in response.json()["error"]
    assert requests.get(f"{server}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("header", ["²", "1" * 40])
def test_a_binary_header_length_of_unicode_digits_is_400(server, header):
    # Was 500 for "²" (int() refuses it); Latin-1 is how it arrives in a WSGI header.
    response = requests.post(f"{server}/v2/models/digits/infer", data=b"{}",
                             headers={"Inference-Header-Content-Length": header.encode("latin-1")})
    assert response.status_code == 400 and set(response.json()) == {"error"}, response.text


@pytest.mark.parametrize("payload", [
    {"inputs": [{"name": ["pixels"], "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"inputs": [{"name": {"a": 1}, "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64}],
     "outputs": [{"name": ["probabilities"]}]},
])
def test_a_tensor_name_that_is_not_a_string_is_400(server, payload):
    # Was 500: a list or object name is unhashable, and `name in specs` raised TypeError.
    response = requests.post(f"{server}/v2/models/digits/infer", json=payload, timeout=10)
    assert response.status_code == 400 and set(response.json()) == {"error"}, response.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)
near_v2 = st.fixed_dictionaries({"inputs": st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(["pixels", "ids", "x"]) | json_values,
     "shape": st.lists(st.integers(0, 8) | st.just(10**9), max_size=4) | json_values,
     "datatype": st.sampled_from(["FP32", "INT64", "BOOL", "FP16", "BYTES"]) | json_values,
     "data": st.lists(st.floats(allow_nan=False) | st.integers() | st.booleans(), max_size=70) | json_values},
), max_size=3) | json_values})


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(payload=json_values | near_v2, path=st.sampled_from(
    ["/v1/models/digits:predict", "/v1/models/multi:predict", "/v2/models/digits/infer", "/v2/models/multi/infer"]))
def test_any_json_over_http_is_answered_or_refused_as_json_never_a_5xx(server, payload, path):
    response = requests.post(f"{server}{path}", data=json.dumps(payload),
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code != 200:
        assert set(response.json()) == {"error"}, response.text
