#!/usr/bin/env bash
# `make deploy` / `make upgrade`: the chart on a real cluster (the current kube context).
#
#   tools/helm-deploy.sh install   install, or upgrade when the release exists
#   tools/helm-deploy.sh upgrade   upgrade an installed release only
#
# Both wait for the rollout and roll back when it fails: Helm 4's --rollback-on-failure,
# Helm 3's --atomic (Helm 4 dropped --atomic from install and deprecated it on upgrade).
#   RELEASE (modelserver), NAMESPACE (modelserver), TIMEOUT (10m), HELM_ARGS (e.g. -f my.yaml)
#   DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
RELEASE=${RELEASE:-modelserver}
NAMESPACE=${NAMESPACE:-modelserver}
TIMEOUT=${TIMEOUT:-10m}
read -r -a extra <<<"${HELM_ARGS:-}"

case "$mode" in
    install) args=(upgrade --install "$RELEASE" helm/modelserver --create-namespace) ;;
    upgrade) args=(upgrade "$RELEASE" helm/modelserver) ;;
    *)
        echo "usage: $0 install|upgrade" >&2
        exit 2
        ;;
esac

if [ "${DRY_RUN:-0}" != 1 ] && ! command -v helm >/dev/null 2>&1; then
    echo "helm is needed: https://helm.sh/docs/intro/install/" >&2
    exit 1
fi
rollback=--rollback-on-failure
if command -v helm >/dev/null 2>&1 && helm version --short 2>/dev/null | grep -q '^v3\.'; then
    rollback=--atomic
fi

args+=(--namespace "$NAMESPACE" --wait --timeout "$TIMEOUT" "$rollback" "${extra[@]}")
printf '+ helm'
printf ' %q' "${args[@]}"
printf '\n'
if [ "${DRY_RUN:-0}" != 1 ]; then
    exec helm "${args[@]}"
fi
