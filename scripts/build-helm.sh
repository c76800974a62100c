#!/usr/bin/env bash
# Builds helm v3 from its Go module, once per version, into the cache shared with the control
# plane (scripts/build-control-plane.sh). Why from source: the machine has Go but no helm, and
# the chart tests must run against a pinned helm, not whatever happens to be installed.
# Prints HELM=<path> for the caller to eval.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${DOWNTIME_CACHE:-$HOME/.cache/downtime-operator}"
BIN="$CACHE/bin"
HELM="$BIN/helm-$HELM_VERSION"
mkdir -p "$BIN"

build_helm() {
  local gobin; gobin="$(mktemp -d)"
  # helm's go.mod has no replace directives, so `go install module@version` builds it as
  # released; the -X flag is what `make build` sets, so `helm version` reports the pin.
  CGO_ENABLED=0 GOBIN="$gobin" go install \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$HELM"
  rm -rf "$gobin"
}

[ -x "$HELM" ] || build_helm
echo "HELM=$HELM"
