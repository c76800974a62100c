#!/usr/bin/env bash
# Builds prometheus and promtool from their Go module, once per version, into the cache shared
# with the control plane and helm. Why from source: the chart's alert rules are tested with the
# real `promtool test rules`, and the machine has Go but no Prometheus.
# Prints PROMETHEUS=<path> and PROMTOOL=<path> for the caller to eval.
set -euo pipefail

# Prometheus 3.x releases are tagged v0.3xx.y for Go modules.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE="${DOWNTIME_CACHE:-$HOME/.cache/downtime-operator}"
BIN="$CACHE/bin"
PROMETHEUS="$BIN/prometheus-$PROMETHEUS_VERSION"
PROMTOOL="$BIN/promtool-$PROMETHEUS_VERSION"
mkdir -p "$BIN"

build() {
  local gobin; gobin="$(mktemp -d)"
  # The module's go.mod has no replace directives, so `go install module@version` builds it as
  # released; without the builtinassets tag the web UI is not embedded, which the tests do not use.
  CGO_ENABLED=0 GOBIN="$gobin" go install -ldflags "-s -w" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  mv "$gobin/prometheus" "$PROMETHEUS"
  mv "$gobin/promtool" "$PROMTOOL"
  rm -rf "$gobin"
}

[ -x "$PROMETHEUS" ] && [ -x "$PROMTOOL" ] || build
echo "PROMETHEUS=$PROMETHEUS"
echo "PROMTOOL=$PROMTOOL"
