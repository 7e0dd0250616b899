#!/usr/bin/env bash
# The image's entrypoint: `inference` (the default) or `gateway` starts that service's Gunicorn,
# anything else runs as given (e.g. `python -c ...`). `exec` makes Gunicorn the container's
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
    *)
        exec "$@"
        ;;
esac
