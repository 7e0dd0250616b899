import http.client
import json
import shutil
import signal
import subprocess
import time

import pytest

from stack import nginx_config
from stack.nginx_config import PLACEHOLDERS, NginxSettings
from tests.support.servers import Process, free_port, wait_until_ready
from tests.support.upstreams import Upstream

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if shutil.os.path.exists("/usr/sbin/nginx") else None)


def test_the_template_uses_exactly_the_declared_placeholders():
    text = nginx_config.TEMPLATE.read_text()
    assert set(nginx_config.PLACEHOLDER.findall(text)) == set(PLACEHOLDERS)
    assert set(NginxSettings("1", ["a:1"], nginx_config.TEMPLATE.parent, "2", ["a:2"]).values()) == set(PLACEHOLDERS)


def test_render_refuses_missing_values():
    with pytest.raises(KeyError):
        nginx_config.render({"LISTEN": "80"})


@pytest.mark.skipif(shutil.which("nginx") is None and not shutil.os.path.exists("/usr/sbin/nginx"),
                    reason="nginx not installed")
def test_nginx_accepts_the_rendered_config(tmp_path):
    settings = NginxSettings("127.0.0.1:18080", ["127.0.0.1:18000", "127.0.0.1:18001"], tmp_path,
                             "127.0.0.1:18500", ["127.0.0.1:18002"])
    path = nginx_config.write(settings)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    result = subprocess.run([nginx, "-t", "-q", "-c", str(path), "-p", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "server 127.0.0.1:18001" in path.read_text()


@pytest.mark.skipif(NGINX is None, reason="nginx not installed")
def test_nginx_recycles_old_client_connections_and_keeps_metrics_private(tmp_path):
    """What the template does for a pod that stops: a client's keep-alive connection older
    than keepalive_time gets `Connection: close` with its next answer (so it reconnects, to a
    live pod); and /metrics is answered by nginx itself, never proxied to the gateway."""
    upstream = Upstream()
    port = free_port()
    settings = NginxSettings(f"127.0.0.1:{port}", [upstream.address], tmp_path, f"127.0.0.1:{free_port()}",
                             [upstream.address], client_keepalive_time="1s")
    conf = nginx_config.write(settings)
    nginx = Process([NGINX, "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"], {},
                    tmp_path / "nginx.log")
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/nginx-healthz", nginx, timeout=30)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def call(method, path):
            client.request(method, path, body=b"{}" if method == "POST" else None)
            response = client.getresponse()
            return response, response.read()

        response, body = call("GET", "/metrics")
        assert response.status == 404 and json.loads(body) == {"error": "no such path"}
        assert upstream.seen == []
        response, _ = call("POST", "/v1/models/digits:predict")
        assert response.status == 200 and response.getheader("Connection") != "close"
        time.sleep(1.3)
        response, _ = call("POST", "/v1/models/digits:predict")  # same connection, now older than 1 s
        assert response.status == 200 and response.getheader("Connection") == "close"
        assert [path for _, path, _ in upstream.seen] == ["/v1/models/digits:predict"] * 2
    finally:
        nginx.stop(signal.SIGQUIT)
        upstream.close()


@pytest.mark.skipif(NGINX is None, reason="nginx not installed")
def test_nginx_passes_grpc_on_and_answers_its_own_errors_as_grpc_statuses(tmp_path):
    """The gRPC server of the template, with a recording gRPC server as the gateway: calls and
    their answers pass through (nginx's request id added), and what nginx refuses itself (a
    message over the size limit, no gateway to reach) comes back as a gRPC status a client can
    read, not an HTTP error it would see as UNKNOWN."""
    import grpc

    from tests.support.upstreams import GrpcUpstream

    gateway = GrpcUpstream(answer=b"\x08\x01")
    grpc_port, dead_port = free_port(), free_port()
    settings = NginxSettings(f"127.0.0.1:{free_port()}", [gateway.http.address], tmp_path, f"127.0.0.1:{grpc_port}",
                             [f"127.0.0.1:{gateway.port}"], client_max_body_size="1m")
    conf = nginx_config.write(settings)
    dead = NginxSettings(f"127.0.0.1:{free_port()}", [gateway.http.address], tmp_path / "dead",
                         f"127.0.0.1:{dead_port}", [f"127.0.0.1:{free_port()}"])
    dead_conf = nginx_config.write(dead)
    servers = [Process([NGINX, "-e", "stderr", "-p", str(run), "-c", str(path), "-g", "daemon off;"], {},
                       run / "nginx.log") for run, path in ((tmp_path, conf), (tmp_path / "dead", dead_conf))]
    try:
        for nginx, each in zip(servers, (settings, dead), strict=True):
            wait_until_ready(f"http://{each.listen}/nginx-healthz", nginx, timeout=30)
        method = "/inference.GRPCInferenceService/ServerLive"
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(method)
            answer, outcome = call.with_call(b"", timeout=10, metadata=[("x-request-id", "nginx-grpc-1")])
            assert answer == b"\x08\x01"
            assert gateway.seen[-1].method == method and gateway.seen[-1].metadata["x-request-id"] == "nginx-grpc-1"
            call(b"", timeout=10, metadata=[("x-request-id", "bad id")])
            assert len(gateway.seen[-1].metadata["x-request-id"]) == 32  # nginx's own, for an unsafe one
            with pytest.raises(grpc.RpcError) as caught:
                call(b"\0" * (2 * 1024 * 1024), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
            assert "too large" in caught.value.details()
            assert call(b"", timeout=10) == b"\x08\x01"  # and it serves on
        with grpc.insecure_channel(f"127.0.0.1:{dead_port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(method)(b"", timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
            assert caught.value.details() == "no gateway could be reached"
            assert dict(caught.value.trailing_metadata())["retry-after"] == "1"
    finally:
        for nginx in servers:
            nginx.stop(signal.SIGQUIT)
        gateway.close()
