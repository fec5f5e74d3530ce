#!/usr/bin/env bash
# Build the platform image (API, workers, migrations: the root Dockerfile) where the build cannot reach
# PyPI: the host's pip downloads the wheels into .platform-wheels/, the build installs from there only.
#
#   BASE_IMAGE=evaluator-rootfs:bookworm scripts/build-platform-image.sh [TAG...]
#
# Prints the image's content tag (evaluator-platform:<hash of its inputs>) on stdout and also tags it
# TAG... (e.g. evaluator-platform:latest, what docker-compose.yml runs). Idempotent and fast when nothing
# changed: wheels are downloaded again only when setup.cfg/pyproject.toml change, and the build is
# skipped when an image with the same inputs (sources, Dockerfile, wheels, base image id) exists.
#
# Environment: BASE_IMAGE (python:3.11-slim), PIP (the host pip command),
# REPOSITORY (evaluator-platform).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
REPOSITORY=${REPOSITORY:-evaluator-platform}
WHEELS=.platform-wheels
if [ -z "${PIP:-}" ]; then
  if [ -x .venv/bin/pip ]; then PIP=.venv/bin/pip; else PIP="python3 -m pip"; fi
fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

base_id=$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) || {
  echo "base image $BASE_IMAGE is not here: 'evaluator images build --base debootstrap' makes" \
       "evaluator-rootfs:bookworm, or docker pull $BASE_IMAGE" >&2
  exit 1
}

# 1. Wheels for the base's Python, binary only (the image has no compiler); again only when the list changed.
# The host's pip evaluates environment markers with the host's Python (e.g. 3.11.7), not the base's (3.11.2):
# an offline dry run in the base image finds what that leaves out, and the host's pip fetches it too.
requirements=$(python3 scripts/platform-requirements.py .)
wanted=$(printf '%s\n%s\n' "$base_id" "$requirements" | sha256sum | cut -c1-64)
if [ "$(cat "$WHEELS/.stamp" 2>/dev/null)" != "$wanted" ]; then
  python_version=$(docker run --rm --network none "$BASE_IMAGE" python3 -c 'import platform; print(platform.python_version())')
  log "downloading the platform image's wheels into $WHEELS/ (host pip, for Python $python_version)"
  rm -rf "$WHEELS"
  mkdir -p "$WHEELS"
  printf '%s\n' "$requirements" > "$WHEELS/.requirements.txt"
  download() { $PIP download --quiet --disable-pip-version-check --dest "$WHEELS" --only-binary=:all: \
                 --python-version "$python_version" "$@"; }
  download -r "$WHEELS/.requirements.txt"
  for attempt in 1 2 3 4 5 6; do
    if check=$(docker run --rm --network none -v "$PWD/$WHEELS:/deps:ro" "$BASE_IMAGE" sh -c \
        'python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --quiet --disable-pip-version-check --dry-run \
           --no-index --find-links /deps -r /deps/.requirements.txt' 2>&1); then
      echo "$wanted" > "$WHEELS/.stamp"
      break
    fi
    missing=$(printf '%s\n' "$check" | sed -n 's/^ERROR: No matching distribution found for \([^;]*\).*/\1/p')
    if [ -z "$missing" ] || [ "$attempt" = 6 ]; then
      printf '%s\n' "$check" >&2
      echo "the wheels in $WHEELS/ do not install in $BASE_IMAGE" >&2
      exit 1
    fi
    log "also downloading $missing (needed by Python $python_version)"
    download $missing
  done
fi

# 2. The image, tagged by a hash of everything it is built from.
inputs=$( {
  echo "$base_id"
  find Dockerfile .dockerignore setup.cfg pyproject.toml README.md scripts/platform-requirements.py \
       evaluator http "$WHEELS" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
image="$REPOSITORY:$inputs"
if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image is up to date"
else
  log "building $image from $BASE_IMAGE"
  docker build --network host --label "evaluator.inputs=$inputs" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PIP_OPTIONS=--no-index --find-links /deps" \
    -t "$image" . >&2
  # Older content tags of this repository are superseded (kept if a container still uses them).
  for old in $(docker images "$REPOSITORY" --format '{{.Tag}}' | grep -E '^[0-9a-f]{16}$' | grep -vx "$inputs"); do
    docker rmi "$REPOSITORY:$old" >/dev/null 2>&1 || true
  done
fi
for tag in "$@"; do docker tag "$image" "$tag"; done
echo "$image"
