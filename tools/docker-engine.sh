#!/usr/bin/env bash
# Make a Docker engine answer here, for the image build and its test.
# As root: installs Debian's docker.io (and debootstrap, for tools/base-image.sh) when missing,
# and starts dockerd in the background when `docker info` fails. Not root: only checks.
# Exit status: 0 the engine answers; 2 there is none and this user cannot start one (callers
# skip); 1 anything else (a failed install or a daemon that does not come up).
# Prints nothing on success unless it had to install or start something.
set -euo pipefail

docker=${DOCKER:-/usr/bin/docker}
[ -x "$docker" ] || docker=$(command -v docker || echo /usr/bin/docker)

if "$docker" info >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if [ -x "$docker" ]; then
        echo "no Docker engine answers to '$docker info' and only root may start one here" >&2
    else
        echo "no Docker client: install docker.io (Debian/Ubuntu) or Docker Engine" >&2
    fi
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
"$here/system-packages.sh" dockerd:docker.io debootstrap:debootstrap
docker=${DOCKER:-/usr/bin/docker}
if "$docker" info >/dev/null 2>&1; then
    exit 0  # the package's own service started it
fi

log=${DOCKERD_LOG:-/var/log/dockerd.log}
echo "starting dockerd in the background (log: $log)"
setsid nohup dockerd >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 120); do
    if "$docker" info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "dockerd did not answer within 60 s; the end of $log:" >&2
tail -n 20 "$log" >&2
exit 1
