"""The routes in force: loading, reloading, DNS changes, and what readiness makes of them."""

from __future__ import annotations

import pytest

from services.gateway.routes_file import RoutesFileError, Target
from services.gateway.routing import Router
from services.gateway.upstream import Backend, BackendRegistry


class Resolver:
    """Name -> addresses, changeable by the test (a stand-in for DNS, not for our services)."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}

    def __call__(self, target: Target) -> list[tuple[str, int]]:
        if target.host not in self.names:
            return [(target.host, target.port)]
        addresses = self.names[target.host]
        if addresses is None:
            raise OSError("name does not resolve")
        return [(a, target.port) for a in addresses]


@pytest.fixture
def setup(tmp_path):
    routes = tmp_path / "routes.yaml"
    resolver = Resolver()
    probed: list[list[Backend]] = []

    def probe(backends: list[Backend]) -> None:
        probed.append(backends)
        for backend in backends:
            backend.probed = True
            backend.serving = frozenset({"digits", "other"})

    router = Router(routes, BackendRegistry(pool_size=1, close_after=0.01), resolver=resolver, probe=probe)
    return routes, resolver, probed, router


def labels(router: Router, model: str) -> list[str]:
    return [b.label for b in router.routes[model].balancer.backends]


def test_load_shares_replicas_between_models_and_probes_them_first(setup):
    routes, _, probed, router = setup
    routes.write_text("""models:
  digits: {backends: ["10.0.0.1:80", "10.0.0.2:80"], versions: {"1": 90, "2": 10}}
  other: {backends: ["10.0.0.2:80"]}
""")
    router.load()
    assert labels(router, "digits") == ["10.0.0.1:80", "10.0.0.2:80"]
    assert router.routes["other"].balancer.backends[0] is router.routes["digits"].balancer.backends[1]
    assert [b.label for b in probed[0]] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert router.routes["digits"].canary.weights == {"1": 90, "2": 10}
    assert router.readiness() == (True, {"digits": {"backends": 2, "ready": 2},
                                         "other": {"backends": 1, "ready": 1}})
    assert router.describe()["digits"] == {"backends": ["10.0.0.1:80", "10.0.0.2:80"],
                                           "versions": {"1": 90, "2": 10}}


def test_reload_applies_changes_keeps_warm_replicas_and_refuses_bad_edits(setup):
    routes, _, probed, router = setup
    routes.write_text('models: {digits: {backends: ["10.0.0.1:80"]}}')
    router.load()
    kept = router.routes["digits"].balancer.backends[0]
    balancer = router.routes["digits"].balancer
    assert router.reload_if_changed() is None

    routes.write_text('models: {digits: {backends: ["10.0.0.1:80", "10.0.0.3:80"], versions: {"2": 1}}}')
    assert router.reload_if_changed() is True
    assert router.routes["digits"].balancer is balancer  # in-flight snapshots stay valid
    assert router.routes["digits"].balancer.backends[0] is kept
    assert [b.label for b in probed[-1]] == ["10.0.0.3:80"]  # only the new replica was probed
    assert router.routes["digits"].canary.weights == {"2": 1}

    routes.write_text("models: {digits: {backends: []}}")
    assert router.reload_if_changed() is False
    assert labels(router, "digits") == ["10.0.0.1:80", "10.0.0.3:80"]
    routes.unlink()
    assert router.reload_if_changed() is False
    assert router.reload_if_changed() is None
    assert "digits" in router.routes


def test_a_first_load_that_fails_raises(setup):
    routes, _, _, router = setup
    with pytest.raises(RoutesFileError, match="cannot read routes file"):
        router.load()
    routes.write_text("models: {digits: {backends: ['nope']}}")
    with pytest.raises(RoutesFileError, match="is not host:port"):
        router.load()


def test_a_dns_name_is_every_address_and_follows_changes(setup):
    routes, resolver, _, router = setup
    resolver.names["inference.ns.svc"] = ["10.1.0.1", "10.1.0.2"]
    routes.write_text('models: {digits: {backends: ["inference.ns.svc:8080"]}}')
    router.load()
    assert labels(router, "digits") == ["10.1.0.1:8080", "10.1.0.2:8080"]

    resolver.names["inference.ns.svc"] = ["10.1.0.2", "10.1.0.3"]  # a rollout replaced a pod
    router.refresh_addresses()
    assert labels(router, "digits") == ["10.1.0.2:8080", "10.1.0.3:8080"]

    resolver.names["inference.ns.svc"] = None  # DNS trouble: keep what is known
    router.refresh_addresses()
    assert labels(router, "digits") == ["10.1.0.2:8080", "10.1.0.3:8080"]


def test_a_name_that_does_not_resolve_yet_leaves_the_model_unready(setup):
    routes, resolver, _, router = setup
    resolver.names["later.ns.svc"] = None
    routes.write_text('models: {digits: {backends: ["later.ns.svc:8080"]}}')
    router.load()
    assert router.readiness() == (False, {"digits": {"backends": 0, "ready": 0}})
    resolver.names["later.ns.svc"] = ["10.2.0.1"]
    router.refresh_addresses()
    assert router.readiness()[0] is True


def test_real_dns_resolution_of_localhost():
    from services.gateway.discovery import resolve

    addresses = resolve(Target("localhost", 8080))
    assert ("127.0.0.1", 8080) in addresses
    assert resolve(Target("10.0.0.1", 1)) == [("10.0.0.1", 1)]
    with pytest.raises(OSError):
        resolve(Target("no-such-host.invalid", 80))


@pytest.mark.parametrize("bad", ["²", "١"])
def test_a_bad_number_at_reload_is_reported_once_counted_and_the_old_routes_stay(setup, caplog, bad):
    from services.gateway.app import watch_files
    from services.gateway.auth import Authenticator
    from services.gateway.metrics import metrics

    routes, _, _, router = setup
    routes.write_text('models: {digits: {backends: ["10.0.0.1:80"]}}')
    router.load()
    m = metrics()
    rejected = m.reloads.labels("routes", "rejected")
    before = rejected._value.get()
    routes.write_text(f'models: {{digits: {{backends: ["10.0.0.2:{bad}"]}}}}')
    for _ in range(3):  # the first poll sees the edit; the next ones must not report it again
        watch_files(router, Authenticator((), ""), Authenticator((), ""), m)
    assert rejected._value.get() == before + 1
    assert labels(router, "digits") == ["10.0.0.1:80"]
    reports = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(reports) == 1, reports
    assert f"{routes}: models.digits.backends: '10.0.0.2:{bad}' is not host:port" in reports[0]


def test_a_bad_routes_file_at_start_is_one_line_naming_the_file_and_the_field(tmp_path, caplog, monkeypatch):
    from services.common import logs
    from services.gateway.app import create_app
    from services.gateway.config import load_settings

    monkeypatch.setattr(logs, "configure", lambda level: None)  # keep caplog's handler

    routes = tmp_path / "routes.yaml"
    routes.write_text('models: {digits: {backends: ["127.0.0.1:8080"], versions: {"²": 1}}}')
    with pytest.raises(SystemExit) as stopped:
        create_app(load_settings(routes_file=str(routes), routes_poll=0.0))
    assert stopped.value.code == 4  # Gunicorn's "App failed to load": the master stops
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == f"cannot start: {routes}: models.digits.versions: version '²' is not an integer"
    assert record.exc_info is None and "\n" not in record.getMessage()


@pytest.mark.slow
def test_gunicorn_says_why_a_bad_routes_file_stops_it_without_a_traceback(tmp_path):
    import subprocess

    from tests.support.servers import REPO, VENV_BIN, Process, free_port

    routes = tmp_path / "routes.yaml"
    routes.write_text('models: {digits: {backends: ["127.0.0.1:١"]}}')
    env = {"GATEWAY_BIND": f"127.0.0.1:{free_port()}", "GATEWAY_ROUTES_FILE": str(routes),
           "GATEWAY_WORKERS": "1"}
    log = tmp_path / "gateway.log"
    process = Process([str(VENV_BIN / "gunicorn"), "-c", str(REPO / "services/gateway/gunicorn.conf.py")],
                      env, log)
    try:
        process.proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        code = process.stop()
    output = log.read_text()
    assert code == 4, output  # Gunicorn's "App failed to load"
    assert "Traceback" not in output, output
    assert f"{routes}: models.digits.backends: '127.0.0.1:١' is not host:port" in output, output

