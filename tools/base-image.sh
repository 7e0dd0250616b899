#!/usr/bin/env bash
# Make the local base image the image test builds on, with no registry: debootstrap a minimal
# Debian bookworm with Python 3.11, then `docker import` it. Does nothing if it already exists
# (keep it: a re-made base has new layer digests, so every build on it starts cold again).
# The host's extra CA certificates (e.g. of a TLS-intercepting proxy) are copied into it, so
# that pip in a build trusts what the host trusts; the product's Dockerfile stays free of them.
# Usage: tools/base-image.sh [IMAGE]   (default: ci/bookworm-python:12)
# Exit status: 0 the image exists; 2 it is missing and only root could make it; 1 failure.
set -euo pipefail

image=${1:-ci/bookworm-python:12}
docker=${DOCKER:-/usr/bin/docker}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if "$docker" image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "base image $image is missing and only root can debootstrap it" >&2
    exit 2
fi

workdir=$(mktemp -d /var/tmp/base-image.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
rootfs=$workdir/rootfs
started=$SECONDS
echo "making base image $image: debootstrap bookworm (about a minute)"
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1; then
    tail -n 30 "$workdir/debootstrap.log" >&2
    exit 1
fi
shopt -s nullglob
extra_cas=(/usr/local/share/ca-certificates/*.crt)
if [ ${#extra_cas[@]} -gt 0 ]; then
    cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
fi
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "$docker" import -c 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "made base image $image in $((SECONDS - started)) s"
