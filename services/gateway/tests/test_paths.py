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
        ("/v2/models/digits/config", ModelCall("v2", "digits", None, "/config", "GET")),
        ("/v2/models/digits/versions/2/stats", ModelCall("v2", "digits", "2", "/stats", "GET")),
        ("/v1/models/digits/labels/stable", ModelCall("v1", "digits", None, "", "GET", "stable")),
        ("/v1/models/digits/labels/stable/metadata", ModelCall("v1", "digits", None, "/metadata", "GET", "stable")),
        (
            "/v1/models/digits/labels/can.ary-1:predict",
            ModelCall("v1", "digits", None, ":predict", "POST", "can.ary-1"),
        ),
    ],
)
def test_model_paths(path, call):
    assert match(path) == call


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/v1/models/", "/v2", "/v1/models/digits/ready", "/v2/models/digits:predict",
     "/v2/models/digits/metadata", "/v1/models/digits/versions/", "/v1/models/a/b",
     "/v1/models/digits:classify", "/v3/models/digits", "/v1/models/-x", "/healthz", "/v2/models/stats",
     "/v2/repository/models/digits/load", "/v2/models/digits/labels/stable/infer",
     "/v2/models/digits/labels/stable", "/v1/models/digits/labels/", "/v1/models/digits/labels/a/versions/1",
     "/v1/models/digits/versions/1/labels/a:predict"],
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
    assert call.target(None, "canary") == "/v1/models/digits/labels/canary:predict"
    assert match("/v1/models/digits/labels/stable:predict").target(None, "stable") == (
        "/v1/models/digits/labels/stable:predict")


def test_repository_control_paths():
    from services.gateway.paths import RepositoryCall, match_repository

    assert match_repository("/v2/repository/models/digits/load") == RepositoryCall("digits", "load")
    assert match_repository("/v2/repository/models/d-1/unload").target == "/v2/repository/models/d-1/unload"
    assert match_repository("/v2/repository/models/digits/reload") is None
    assert match_repository("/v2/repository/index") is None
    assert match("/v2/models/digits/stats").is_statistics and not match("/v2/models/digits/config").is_statistics
