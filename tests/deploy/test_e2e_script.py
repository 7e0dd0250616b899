"""The kind e2e path cannot run here (no kind, no registry); what can be checked is checked:
the scripts are shellcheck-clean and the dry run prints the whole flow with the pinned versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy.chart import REPO

SCRIPTS = [REPO / "tools/kind-e2e.sh", REPO / "tools/helm-deploy.sh"]
PINS = {
    "kind": "v0.33.0",
    "node image": "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5",
    "metrics-server": "https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.9.0/components.yaml",
}


def make(*args: str, **env: str) -> subprocess.CompletedProcess:
    # KUBECONFIG=/dev/null: a dry run must not need (or see) any cluster.
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "KUBECONFIG": "/dev/null", **env})


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_scripts_are_shellcheck_clean():
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.fixture(scope="module")
def dry_run() -> str:
    result = make("e2e", "DRY_RUN=1")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def commands(output: str) -> list[str]:
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def test_dry_run_prints_every_step_in_order(dry_run):
    steps = [
        "kind create cluster",
        "make image",
        "kind load docker-image",
        "apply -f",
        "patch deployment metrics-server",
        "rollout status deployment/metrics-server",
        "apiservice/v1beta1.metrics.k8s.io",
        "helm upgrade --install",
        "helm test",
        "-m pytest tests/e2e",
        "kind delete cluster",
    ]
    printed = commands(dry_run)
    positions = [next(i for i, line in enumerate(printed) if step in line) for step in steps]
    assert positions == sorted(positions), printed


def test_dry_run_uses_the_pinned_versions(dry_run):
    for what, pin in PINS.items():
        assert pin in dry_run, what
    (create,) = [c for c in commands(dry_run) if c.startswith("kind create cluster")]
    assert f"--image {PINS['node image']}" in create and "--config k8s/kind-cluster.yaml" in create
    assert "--kubelet-insecure-tls" in dry_run


def test_dry_run_loads_a_fixed_tag_and_installs_it_with_the_kind_values(dry_run):
    (load,) = [c for c in commands(dry_run) if c.startswith("kind load docker-image")]
    image = load.split()[3]
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest"
    (install,) = [c for c in commands(dry_run) if c.startswith("helm upgrade --install")]
    assert f"image.repository={repository}" in install and f"image.tag={tag}" in install
    assert "-f k8s/kind-values.yaml" in install and "--wait" in install
    assert f"IMAGE={image}" in next(c for c in commands(dry_run) if c.startswith("make image"))


def test_every_cluster_command_names_the_kind_context(dry_run):
    for command in commands(dry_run):
        if re.match(r"(\S*kubectl|helm) ", command):
            assert re.search(r"--(kube-)?context kind-modelserver-e2e\b", command), command


def test_the_tests_reach_nginx_through_the_kind_port_mapping(dry_run):
    cluster = yaml.safe_load((REPO / "k8s/kind-cluster.yaml").read_text())
    http, grpc = cluster["nodes"][0]["extraPortMappings"]
    values = yaml.safe_load((REPO / "k8s/kind-values.yaml").read_text())
    assert values["nginx"]["service"] == {"type": "NodePort", "nodePort": http["containerPort"],
                                          "grpcNodePort": grpc["containerPort"]}
    assert http["listenAddress"] == grpc["listenAddress"] == "127.0.0.1"
    (pytest_run,) = [c for c in commands(dry_run) if "-m pytest tests/e2e" in c]
    assert f"E2E_BASE_URL=http://127.0.0.1:{http['hostPort']}" in pytest_run
    assert f"E2E_GRPC_ADDRESS=127.0.0.1:{grpc['hostPort']}" in pytest_run
    assert "E2E_KUBE_CONTEXT=kind-modelserver-e2e" in pytest_run


def test_keep_cluster_keeps_it():
    result = make("e2e", "DRY_RUN=1", "KEEP_CLUSTER=1")
    assert result.returncode == 0 and not [c for c in commands(result.stdout) if c.startswith("kind delete")]
    assert "keeping cluster" in result.stdout


def test_preflight_names_what_is_missing_and_stops(tmp_path):
    """Without kind and helm on PATH a real run stops before doing anything, saying what to install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "git", "awk", "dirname", "cat", "env"):
        if path := shutil.which(tool):
            (bin_dir / tool).symlink_to(path)
    result = subprocess.run([str(REPO / "tools/kind-e2e.sh")], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={"PATH": str(bin_dir), "HOME": str(tmp_path), "KUBECTL": "kubectl"})
    assert result.returncode == 1
    assert "kind v0.33.0: go install sigs.k8s.io/kind@v0.33.0" in result.stdout
    assert "helm 3.18+ or 4" in result.stdout and "docker" in result.stdout
    assert "+ kind create" not in result.stdout


@pytest.mark.parametrize(("target", "expected"), [("deploy", "upgrade --install"), ("upgrade", "upgrade modelserver")])
def test_deploy_and_upgrade_roll_back_a_failed_release(target, expected):
    result = make(target, "DRY_RUN=1", "HELM_ARGS=-f my-values.yaml")
    assert result.returncode == 0, result.stderr
    (command,) = [line for line in result.stdout.splitlines() if line.startswith("+ helm ")]
    assert expected in command and "--wait" in command and "-f my-values.yaml" in command
    assert re.search(r"--(rollback-on-failure|atomic)\b", command)
