#!/usr/bin/env bash
# Builds the repository's Dockerfile with podman, as the tests run it (tests/e2e/test_image.py).
#
# Docker Hub cannot be reached from the test machines, so the base is a stand-in made here: the
# same Debian release as python:3.11-slim-bookworm, with Debian's Python 3.11 as a virtual
# environment in /usr/local (where the official image keeps its Python and pip), built with
# mmdebstrap from Debian's packages and cached by release. The build itself has no network:
# pip finds the build backend and every dependency in a wheelhouse downloaded beforehand (cached
# by pyproject.toml's hash) and mounted with a pip.conf that says so. The image is tagged by the
# hash of everything it is built from, so an unchanged tree is not built twice.
#
# Needs root, podman (runc runtime) and mmdebstrap; installs them with apt when missing.
# Prints IMAGE=<tag> for the caller to eval.
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=bookworm
CACHE="${DOWNTIME_CACHE:-$HOME/.cache/downtime-operator}"
BASE_TAR="$CACHE/images/base-$RELEASE-python3.11.tar"
BASE_IMAGE="localhost/downtime-base:$RELEASE-python3.11"
PODMAN=(podman --runtime runc)

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
  packages=(podman mmdebstrap runc uidmap)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >&2; }
fi

if [ ! -s "$BASE_TAR" ]; then
  mkdir -p "$(dirname "$BASE_TAR")"
  mmdebstrap --variant=minbase --format=tar --include=python3,python3-venv,passwd,ca-certificates \
    --customize-hook='chroot "$1" python3 -m venv /usr/local' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$RELEASE" "$BASE_TAR.part" >&2
  mv "$BASE_TAR.part" "$BASE_TAR"
fi
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  "${PODMAN[@]}" import "$BASE_TAR" "$BASE_IMAGE" >&2
fi

WHEELS="$CACHE/wheels/$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$WHEELS/.complete" ]; then
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  # The build backend (the builder stage's `pip wheel .`) and the runtime's dependencies.
  "${VENV:-.venv}/bin/pip" download -q --disable-pip-version-check --only-binary=:all: \
    --dest "$WHEELS" 'setuptools>=75' wheel >&2
  "${VENV:-.venv}/bin/python" - "$WHEELS" <<'EOF' >&2
import subprocess, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                "--only-binary=:all:", "--dest", sys.argv[1], *deps], check=True)
EOF
  printf '[global]\nno-index = true\nfind-links = /wheels\n' > "$WHEELS/pip.conf"
  touch "$WHEELS/.complete"
fi

HASH="$( (cat Dockerfile .dockerignore pyproject.toml; find operator -type f -not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)"
IMAGE="localhost/downtime-operator:test-$HASH"
if ! "${PODMAN[@]}" image exists "$IMAGE"; then
  "${PODMAN[@]}" build --network=none --pull=never \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --volume "$WHEELS:/wheels:ro" --volume "$WHEELS/pip.conf:/etc/pip.conf:ro" \
    --tag "$IMAGE" . >&2
fi
echo "IMAGE=$IMAGE"
