#!/usr/bin/env bash
# The image's entrypoint: `inference` (the default) or `gateway` starts that service's Gunicorn,
# `drain FILE SECONDS` is the pods' preStop hook, anything else runs as given (e.g.
# `python -c ...`). `exec` makes Gunicorn the container's
# main process, so `docker stop` / Kubernetes' SIGTERM reaches it and it drains cleanly.
set -euo pipefail

case "${1:-inference}" in
    inference | gateway)
        service=${1:-inference}
        config=/app/services/$service/gunicorn.conf.py
        if [ ! -f "$config" ]; then
            echo "this image has no $service service ($config is missing)" >&2
            exit 64
        fi
        # The Prometheus multiprocess directory must be writable; with a read-only root
        # filesystem that takes a tmpfs (docker run --tmpfs /tmp) or an emptyDir on Kubernetes.
        metrics=${PROMETHEUS_MULTIPROC_DIR:-/tmp/metrics}
        if ! mkdir -p "$metrics" 2>/dev/null || [ ! -w "$metrics" ]; then
            echo "$metrics is not writable: mount a tmpfs there (docker run --tmpfs /tmp)" >&2
            exit 73
        fi
        shift || true
        exec gunicorn -c "$config" "$@"
        ;;
    drain)
        # `drain FILE SECONDS`: Kubernetes' preStop hook (the chart's). Announce the drain to
        # the running service by creating FILE (its INFERENCE_/GATEWAY_DRAIN_FILE: /readyz then
        # answers 503 and every response carries Connection: close, while it keeps serving),
        # then pause SECONDS before the kubelet sends SIGTERM. An exec handler: every Kubernetes
        # version runs it (the native sleep action needs 1.30), and it only writes to /tmp.
        if [ $# -ne 3 ]; then
            echo "usage: drain FILE SECONDS" >&2
            exit 64
        fi
        : > "$2"
        exec sleep "$3"
        ;;
    *)
        exec "$@"
        ;;
esac
