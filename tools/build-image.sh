#!/usr/bin/env bash
# Build Dockerfile.inference and tag it NAME:MODEL-MODEL_VERSION-REVISION (never `latest`);
# REVISION is the git commit, with -dirty when tracked files have uncommitted changes.
# Settings from the environment (`make image VAR=...` passes them):
#   IMAGE          the whole tag (e.g. modelserver:e2e-abc); default NAME:MODEL-MODEL_VERSION-REVISION
#   IMAGE_NAME     modelserver
#   MODEL          digits      MODEL_VERSION 1
#   MODEL_SOURCE   train (train digits in the build) or context (copy models/MODEL/MODEL_VERSION)
#   BASE_IMAGE     empty: the Dockerfile's default, an official slim Python image
#   DOCKER         /usr/bin/docker (a client that can use BuildKit without buildx)
# Prints the build time and size; the tag is the last line of its output. The full build log
# is written to reports/image-build.log.
set -euo pipefail
cd "$(dirname "$0")/.."

docker=${DOCKER:-/usr/bin/docker}
[ -x "$docker" ] || docker=$(command -v docker)
name=${IMAGE_NAME:-modelserver}
model=${MODEL:-digits}
model_version=${MODEL_VERSION:-1}
model_source=${MODEL_SOURCE:-train}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' services/__init__.py)
revision=unknown short=unknown
if commit=$(git rev-parse HEAD 2>/dev/null); then
    revision=$commit short=${commit:0:12}
    if [ -n "$(git status --porcelain)" ]; then
        revision=$commit-dirty short=$short-dirty
    fi
fi
tag=${IMAGE:-$name:$model-$model_version-$short}
if [ "${tag##*:}" = latest ] || [ "${tag%:*}" = "$tag" ]; then
    echo "IMAGE must carry a tag other than latest, got $tag" >&2
    exit 1
fi

if [ "$model_source" = context ] && [ ! -f "models/$model/$model_version/model.keras" ]; then
    echo "models/$model/$model_version/model.keras is missing (make model trains digits)" >&2
    exit 1
fi
args=(build --network host --progress plain -f Dockerfile.inference -t "$tag"
      --build-arg "MODEL=$model" --build-arg "MODEL_VERSION=$model_version"
      --build-arg "MODEL_SOURCE=$model_source"
      --build-arg "VERSION=$version" --build-arg "REVISION=$revision")
if [ -n "${BASE_IMAGE:-}" ]; then
    args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi

mkdir -p reports
log=reports/image-build.log
echo "building $tag (base: ${BASE_IMAGE:-the Dockerfile default}; log: $log)"
started=$(date +%s%N)
if ! DOCKER_BUILDKIT=1 "$docker" "${args[@]}" . >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "image build failed; the whole log is in $log" >&2
    exit 1
fi
ms=$((($(date +%s%N) - started) / 1000000))
bytes=$("$docker" image inspect -f '{{.Size}}' "$tag")
cached=$(grep -c ' CACHED$' "$log" || true)
printf 'built %s in %d.%d s (%d steps cached), %d MB\n' "$tag" $((ms / 1000)) $((ms % 1000 / 100)) \
    "$cached" $(((bytes + 500000) / 1000000))
echo "$tag"
