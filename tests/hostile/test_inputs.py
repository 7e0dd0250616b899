"""Hostile requests, each against nginx, the gateway and an inference replica: every one gets
a quick JSON error with the right 4xx status, never a 5xx, a hang or a crash."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.support import rawhttp
from tests.support.servers import REPO

pytestmark = pytest.mark.slow

SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
EXAMPLE = (REPO / "examples/digit-0.json").read_bytes()


def assert_json_error(status: int, wanted: int | tuple[int, ...], content_type: str, body: bytes) -> None:
    wanted = (wanted,) if isinstance(wanted, int) else wanted
    assert status in wanted, (status, body[:300])
    assert content_type.startswith("application/json"), (content_type, body[:300])
    error = json.loads(body)
    assert set(error) == {"error"} and isinstance(error["error"], str), body[:300]


def check(response: requests.Response, wanted: int | tuple[int, ...]) -> None:
    assert_json_error(response.status_code, wanted, response.headers.get("Content-Type", ""), response.content)


def still_serves(target: str) -> None:
    response = requests.post(f"{target}/v1/models/digits:predict", data=EXAMPLE, timeout=30)
    assert response.status_code == 200, response.text[:300]


def test_a_huge_declared_body_is_refused_before_it_is_sent(target):
    raw = rawhttp.head("POST", "/v1/models/digits:predict",
                       {"Content-Type": "application/json", "Content-Length": str(2**30)}) + b" " * 65536
    response = rawhttp.request(target, raw, timeout=10)  # 1 GiB announced, 64 KiB sent
    assert_json_error(response.status, 413, response.headers.get("content-type", ""), response.body)
    assert response.seconds < 5
    still_serves(target)


def test_a_chunked_body_over_the_limit_is_refused(target):
    def chunks():
        for _ in range(10):  # 10 MiB, over every default limit (8 MiB)
            yield b" " * (1 << 20)

    response = requests.post(f"{target}/v1/models/digits:predict", data=chunks(), timeout=60,
                             headers={"Content-Type": "application/json"})
    check(response, 413)
    still_serves(target)


@pytest.mark.parametrize("path, body", [
    ("/v1/models/digits:predict", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("/v2/models/digits/infer", b'{"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": '
     + b"[" * 50_000 + b"]" * 50_000 + b"}]}"),
    ("/v1/models/digits:predict", b'{"a":' * 20_000 + b"1" + b"}" * 20_000),
])
def test_deeply_nested_json_is_a_client_error(target, path, body):
    check(requests.post(f"{target}{path}", data=body, timeout=30), 400)
    still_serves(target)


@pytest.mark.parametrize("shape", [[10**9, 8, 8, 1], [2**62, 2**62, 8, 1], [1, 8, 8, 10**12]])
def test_a_billion_element_shape_with_tiny_data_is_refused_at_once(target, shape):
    tensor = {"name": "pixels", "shape": shape, "datatype": "FP32", "data": [0.5]}
    started = time.monotonic()
    check(requests.post(f"{target}/v2/models/digits/infer", json={"inputs": [tensor]}, timeout=30), 400)
    header = json.dumps({"inputs": [{"name": "pixels", "shape": shape, "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4}}]}).encode()
    binary = requests.post(f"{target}/v2/models/digits/infer", data=header + b"\0\0\0\0", timeout=30,
                           headers={"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(header))})
    check(binary, 400)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("payload", [
    {"instances": [["1"] * 64]},
    {"instances": [["\u0000"] * 64]},
    {"instances": [[None] * 64]},
    {"instances": [[{"$gt": 1}]]},
    {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": ["\u0000"] * 64}]},
    {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": ["NaN"] * 64}]},
    {"inputs": [{"name": "pixels\u0000", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64}]},
    {"inputs": [{"name": "pixels", "shape": ["1", 8, 8, 1], "datatype": "FP32", "data": [0] * 64}]},
    {"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32\u0000", "data": [0] * 64}]},
])
def test_strings_nulls_and_nul_characters_in_numeric_fields_are_client_errors(target, payload):
    path = "/v1/models/digits:predict" if "instances" in payload else "/v2/models/digits/infer"
    check(requests.post(f"{target}{path}", json=payload, timeout=30), 400)


def test_a_raw_nul_byte_in_the_body_is_malformed_json(target):
    check(requests.post(f"{target}/v1/models/digits:predict", data=b'{"instances": [[\x00]]}', timeout=30), 400)


@pytest.mark.parametrize("path", [
    "/v1/models/../../../../etc/passwd",
    "/v1/models/..%2F..%2F..%2Fetc%2Fpasswd:predict",
    "/v1/models/%2e%2e/%2e%2e/metadata",
    "/v1/models/digits/versions/..%2F1:predict",
    "/v1/models/digits/versions/1%2F..%2F..%2F2/metadata",
    "/v2/models/..%2F..%2Fetc/infer",
    "/v2/models/digits%00/ready",
    "/v2/models/digits/versions/%2e%2e%2f1",
    "/docs/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/docs/assets/%2e%2e/%2e%2e/services/__init__.py",
])
def test_path_traversal_in_model_names_and_versions_finds_nothing(target, path):
    method = "POST" if path.endswith((":predict", "/infer")) else "GET"
    raw = rawhttp.head(method, path, {"Content-Type": "application/json", "Content-Length": "2"}) + b"{}"
    response = rawhttp.request(target, raw)  # sent as is: requests would normalise the dots
    assert_json_error(response.status, (400, 404), response.headers.get("content-type", ""), response.body)
    assert b"root:" not in response.body and b"__version__" not in response.body


@pytest.mark.parametrize("value", [
    "has space", "<script>alert(1)</script>", "x" * 200, "semi;colon", "tab\there", "caf\u00e9",
    "%0d%0aX-Injected: 1",
])
def test_unsafe_request_ids_are_replaced_not_echoed(target, value):
    raw = rawhttp.head("GET", "/v1/models/digits", [("X-Request-ID", value)])
    response = rawhttp.request(target, raw)
    echoed = response.headers.get("x-request-id", "")
    assert SAFE_ID.fullmatch(echoed) and echoed != value, echoed
    assert "x-injected" not in response.headers


def test_a_request_id_folded_onto_a_second_line_is_refused(target):
    raw = b"GET /v1/models/digits HTTP/1.1\r\nHost: x\r\nX-Request-ID: ok\r\n X-Injected: 1\r\n\r\n"
    response = rawhttp.request(target, raw)
    assert "x-injected" not in response.headers
    assert response.status == 400 and response.headers.get("content-type", "").startswith("application/json")


def test_a_safe_request_id_is_echoed_even_on_errors_nginx_makes(target):
    raw = rawhttp.head("POST", "/v1/models/digits:predict",
                       {"X-Request-ID": "trace-42.a:b", "Content-Length": str(2**30)})
    assert rawhttp.request(target, raw).headers["x-request-id"] == "trace-42.a:b"
    raw = rawhttp.head("POST", "/v1/models/digits:predict",
                       {"X-Request-ID": "bad id <x>", "Content-Length": str(2**30)})
    assert SAFE_ID.fullmatch(rawhttp.request(target, raw).headers["x-request-id"])


def test_a_request_line_over_the_limits_is_a_json_400(target):
    response = rawhttp.request(target, rawhttp.head("GET", "/v1/models/" + "a" * 20_000, {}))
    assert_json_error(response.status, (400, 414), response.headers.get("content-type", ""), response.body)
    many = rawhttp.head("GET", "/v1/models/digits", [(f"X-H{i}", "v") for i in range(200)])
    response = rawhttp.request(target, many)
    assert response.status in (200, 400, 431), response.status
    if response.status != 200:
        assert response.headers.get("content-type", "").startswith("application/json")
