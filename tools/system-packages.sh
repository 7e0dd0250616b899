#!/usr/bin/env bash
# Install the Debian/Ubuntu packages a command needs, when they are missing.
# As root it runs apt-get; otherwise it prints what to install and fails.
# Usage: tools/system-packages.sh COMMAND:PACKAGE [COMMAND:PACKAGE ...]
#   e.g. tools/system-packages.sh nginx:nginx-light wrk:wrk
# A COMMAND of the form python3-venv is checked by trying `python3 -m venv`; one of the form
# dpkg (e.g. dpkg:libb64-0d, for a library) by asking dpkg whether the package is installed.
set -euo pipefail

missing=()
for pair in "$@"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    case "$cmd" in
        python3-venv)
            ${PYTHON:-python3} -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("$pkg") ;;
        dpkg)
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg") ;;
        *)
            command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg") ;;
    esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
