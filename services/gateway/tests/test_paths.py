"""Which paths are model calls, and where they go upstream."""

from __future__ import annotations

import pytest

from services.gateway.paths import ModelCall, match


@pytest.mark.parametrize(
    "path, call",
    [
        ("/v1/models/digits", ModelCall("v1", "digits", None, "", "GET")),
        ("/v1/models/digits/versions/3", ModelCall("v1", "digits", "3", "", "GET")),
        ("/v1/models/digits/metadata", ModelCall("v1", "digits", None, "/metadata", "GET")),
        ("/v1/models/digits/versions/3/metadata", ModelCall("v1", "digits", "3", "/metadata", "GET")),
        ("/v1/models/digits:predict", ModelCall("v1", "digits", None, ":predict", "POST")),
        ("/v1/models/d.x-1_2/versions/x:predict", ModelCall("v1", "d.x-1_2", "x", ":predict", "POST")),
        ("/v2/models/digits", ModelCall("v2", "digits", None, "", "GET")),
        ("/v2/models/digits/ready", ModelCall("v2", "digits", None, "/ready", "GET")),
        ("/v2/models/digits/versions/2/ready", ModelCall("v2", "digits", "2", "/ready", "GET")),
        ("/v2/models/digits/infer", ModelCall("v2", "digits", None, "/infer", "POST")),
        ("/v2/models/digits/versions/2/infer", ModelCall("v2", "digits", "2", "/infer", "POST")),
    ],
)
def test_model_paths(path, call):
    assert match(path) == call


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/v1/models/", "/v2", "/v1/models/digits/ready", "/v2/models/digits:predict",
     "/v2/models/digits/metadata", "/v1/models/digits/versions/", "/v1/models/a/b",
     "/v1/models/digits:classify", "/v3/models/digits", "/v1/models/-x", "/healthz"],
)
def test_other_paths_are_not_model_calls(path):
    assert match(path) is None


def test_targets_and_which_calls_a_canary_splits():
    call = match("/v1/models/digits:predict")
    assert call.is_inference and call.target("2") == "/v1/models/digits/versions/2:predict"
    assert call.target(None) == "/v1/models/digits:predict"
    infer = match("/v2/models/digits/infer")
    assert infer.is_inference and infer.target("1") == "/v2/models/digits/versions/1/infer"
    assert not match("/v2/models/digits").is_inference
