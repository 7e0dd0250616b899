"""The gateway's gRPC front door against stand-in replicas that record what they are sent.

The gateway is the real one (its app factory, in this process, with its gRPC server on a free
port); the replicas are ``GrpcUpstream``s, which answer or fail on demand, so what the gateway
forwards (bytes, metadata, deadline), retries and passes back can be seen exactly.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import yaml
from prometheus_client import REGISTRY
from tensorflow_serving.apis import predict_pb2

from services.gateway.app import create_app
from services.gateway.config import load_settings
from tests.support.grpc_clients import TFServing, predict_request, status_of
from tests.support.servers import free_port
from tests.support.upstreams import GrpcUpstream, Upstream

PREDICT = "/tensorflow.serving.PredictionService/Predict"
PIXELS = np.zeros((1, 8, 8, 1), dtype=np.float32)
KEY = "front-key-19ad"


@pytest.fixture
def gateway(tmp_path):
    """start(routes, **settings) -> the gateway's gRPC address; every server stops at the end."""
    servers = []

    def start(routes: dict, **settings) -> str:
        path = tmp_path / f"routes-{len(servers)}.yaml"
        path.write_text(yaml.safe_dump({"models": routes}))
        address = f"127.0.0.1:{free_port()}"
        app = create_app(load_settings(routes_file=str(path), grpc_bind=address, access_log=False,
                                       health_interval=0.2, **settings))
        servers.append(app.extensions["grpc_server"])
        return address

    yield start
    for server in servers:
        server.stop(None)


@pytest.fixture
def upstreams():
    made = []

    def make(**kwargs) -> GrpcUpstream:
        made.append(GrpcUpstream(**kwargs))
        return made[-1]

    yield make
    for upstream in made:
        upstream.close()


def sent_request(upstream: GrpcUpstream, index: int = -1) -> predict_pb2.PredictRequest:
    return predict_pb2.PredictRequest.FromString(upstream.seen[index].body)


def retries(reason: str) -> float:
    return REGISTRY.get_sample_value("modelserver_gateway_retries_total", {"model": "digits", "reason": reason}) or 0


def test_forwards_the_bytes_and_rewrites_only_the_version_the_canary_picks(gateway, upstreams):
    upstream = upstreams(answer=predict_pb2.PredictResponse().SerializeToString())
    client = TFServing(gateway({"digits": {"backends": [upstream.http.address], "versions": {"1": 0, "2": 1}}}))
    pinned = predict_request("digits", PIXELS, version=1)
    client.predict(pinned)
    assert upstream.seen[-1].method == PREDICT
    assert upstream.seen[-1].body == pinned.SerializeToString()  # untouched, byte for byte
    plain = predict_request("digits", PIXELS)
    client.predict(plain)
    forwarded = sent_request(upstream)
    assert forwarded.model_spec.version.value == 2  # the canary's only version with weight
    forwarded.model_spec.ClearField("version_choice")
    assert forwarded == plain


def test_sends_the_request_id_trace_and_deadline_but_never_the_key(gateway, upstreams):
    upstream = upstreams(answer=b"")
    address = gateway({"digits": {"backends": [upstream.http.address]}}, api_keys=(KEY,),
                      request_timeout=7.0, max_request_timeout=20.0)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    TFServing(address, metadata=[("authorization", f"Bearer {KEY}"), ("x-request-id", "front-1"),
                                 ("traceparent", traceparent)]).predict(predict_request("digits", PIXELS), timeout=5)
    call = upstream.seen[-1]
    assert call.metadata["x-request-id"] == "front-1"
    # The caller's trace goes on, from the gateway's own forward span.
    sent = call.metadata["traceparent"].split("-")
    assert sent[1] == traceparent.split("-")[1] and sent[2] != traceparent.split("-")[2]
    assert "authorization" not in call.metadata and "x-api-key" not in call.metadata
    # gRPC core may round a grpc-timeout up when it encodes it (seen: a 20 s cap arriving as 20.1 s)
    rounding = 0.5
    assert 3 < call.time_remaining <= 5 + rounding  # the client's deadline, less the time spent getting here
    TFServing(address, metadata=[("x-api-key", KEY)]).predict(predict_request("digits", PIXELS), timeout=60)
    assert upstream.seen[-1].time_remaining <= 20 + rounding  # capped at GATEWAY_MAX_REQUEST_TIMEOUT
    TFServing(address).channel.unary_unary(PREDICT)(  # no deadline: the default one
        predict_request("digits", PIXELS).SerializeToString(), metadata=[("x-api-key", KEY)])
    assert 5 < upstream.seen[-1].time_remaining <= 7 + rounding


def test_a_replica_error_passes_through_with_its_code_message_and_trailers(gateway, upstreams):
    upstream = upstreams(error=(grpc.StatusCode.INVALID_ARGUMENT, "input 'pixels' has shape [1]",
                                (("x-detail", "shape"),)))
    client = TFServing(gateway({"digits": {"backends": [upstream.http.address]}}))
    with pytest.raises(grpc.RpcError) as caught:
        client.predict(predict_request("digits", PIXELS))
    code, message, trailing = status_of(caught.value)
    assert (code, message, trailing.get("x-detail")) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         "input 'pixels' has shape [1]", "shape")
    assert len(upstream.seen) == 1  # not retried


def test_unavailable_is_retried_once_on_another_replica(gateway, upstreams):
    down = upstreams(error=(grpc.StatusCode.UNAVAILABLE, "shedding load", (("retry-after", "1"),)))
    up = upstreams(answer=b"")
    client = TFServing(gateway({"digits": {"backends": [down.http.address, up.http.address]}}))
    before = retries("unavailable")
    for _ in range(6):
        client.predict(predict_request("digits", PIXELS))
    assert len(up.seen) == 6 and len(down.seen) >= 1  # each call that met it first went on to the other
    assert retries("unavailable") == before + len(down.seen)
    other = upstreams(error=(grpc.StatusCode.UNAVAILABLE, "stopping", ()))
    both_down = TFServing(gateway({"digits": {"backends": [down.http.address, other.http.address]}}))
    seen = len(down.seen) + len(other.seen)
    with pytest.raises(grpc.RpcError) as caught:
        both_down.predict(predict_request("digits", PIXELS))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(down.seen) + len(other.seen) == seen + 2  # two attempts, no more


def test_a_replica_without_grpc_gets_no_grpc_calls(gateway, upstreams):
    http_only = Upstream()
    try:
        up = upstreams(answer=b"")
        client = TFServing(gateway({"digits": {"backends": [http_only.address, up.http.address]}}))
        for _ in range(4):
            client.predict(predict_request("digits", PIXELS))
        assert len(up.seen) == 4 and http_only.model_calls() == 0
        lonely = TFServing(gateway({"digits": {"backends": [http_only.address]}}))
        with pytest.raises(grpc.RpcError) as caught:
            lonely.predict(predict_request("digits", PIXELS))
        code, message, trailing = status_of(caught.value)
        assert code == grpc.StatusCode.UNAVAILABLE and "gRPC" in message and trailing["retry-after"] == "1"
    finally:
        http_only.close()


def test_keys_from_metadata_and_the_rate_limit(gateway, upstreams):
    upstream = upstreams(answer=b"")
    address = gateway({"digits": {"backends": [upstream.http.address]}}, api_keys=(KEY,), rate_limit=2.0,
                      rate_burst=2)
    for metadata in ([], [("x-api-key", "wrong")], [("authorization", "Basic " + KEY)]):
        with pytest.raises(grpc.RpcError) as caught:
            TFServing(address, metadata=metadata).predict(predict_request("digits", PIXELS))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert upstream.seen == []
    keyed = TFServing(address, metadata=[("authorization", f"Bearer {KEY}")])
    keyed.predict(predict_request("digits", PIXELS))
    keyed.predict(predict_request("digits", PIXELS))
    with pytest.raises(grpc.RpcError) as caught:
        keyed.predict(predict_request("digits", PIXELS))
    code, message, trailing = status_of(caught.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in message
    assert int(trailing["retry-after"]) >= 1
    time.sleep(0.6)
    keyed.predict(predict_request("digits", PIXELS))  # a token again after 1/rate seconds
    assert len(upstream.seen) == 3
