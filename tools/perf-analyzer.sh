#!/usr/bin/env bash
# Install Triton's perf_analyzer into the virtualenv without touching its tritonclient.
# The binary ships inside tritonclient 2.38.0's wheel (tritonclient-2.38.0.data/data/bin); it
# links Debian's libb64 and CUDA's runtime library, which PyPI's nvidia-cuda-runtime-cu12 wheel
# ships (no GPU is used: HTTP and gRPC). Both wheels are unpacked under $VENV/perf_analyzer, and
# $VENV/bin/perf_analyzer is a wrapper that points the loader at that library.
# Usage: tools/perf-analyzer.sh VENV
set -euo pipefail

venv=${1:?usage: tools/perf-analyzer.sh VENV}
home="$venv/perf_analyzer"
wrapper="$venv/bin/perf_analyzer"
TRITONCLIENT=2.38.0
CUDA_RUNTIME=12.9.79

"$(dirname "$0")/system-packages.sh" dpkg:libb64-0d
mkdir -p "$home/wheels"
pip=("$venv/bin/python" -m pip --disable-pip-version-check download --quiet --no-deps --dest "$home/wheels")
"${pip[@]}" --only-binary=:all: --platform manylinux1_x86_64 "tritonclient==$TRITONCLIENT"
"${pip[@]}" --only-binary=:all: --platform manylinux2014_x86_64 "nvidia-cuda-runtime-cu12==$CUDA_RUNTIME"

unpack() {  # wheel member -> file under $home
    "$venv/bin/python" - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
from pathlib import Path
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target, "wb") as out:
    shutil.copyfileobj(source, out)
Path(target).chmod(0o755)
PY
}
mkdir -p "$home/lib"
unpack "$home/wheels/tritonclient-$TRITONCLIENT-py3-none-manylinux1_x86_64.whl" \
    "tritonclient-$TRITONCLIENT.data/data/bin/perf_analyzer" "$home/perf_analyzer"
unpack "$(ls "$home"/wheels/nvidia_cuda_runtime_cu12-"$CUDA_RUNTIME"-*.whl)" \
    "nvidia/cuda_runtime/lib/libcudart.so.12" "$home/lib/libcudart.so.12"
rm -rf "$home/wheels"

cat > "$wrapper" <<SH
#!/bin/sh
# Triton's perf_analyzer $TRITONCLIENT (tools/perf-analyzer.sh); CPU only, HTTP and gRPC.
LD_LIBRARY_PATH="$(cd "$home" && pwd -P)/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$(cd "$home" && pwd -P)/perf_analyzer" "\$@"
SH
chmod 755 "$wrapper"
"$wrapper" --version >/dev/null 2>&1 || { "$wrapper" --version; exit 1; }
echo "perf_analyzer $TRITONCLIENT installed: $wrapper"
