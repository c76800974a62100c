#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules, once per version, into a cache outside the repo.
# Why a wrapper module: k8s.io/kubernetes requires its ~30 staging modules at v0.0.0 and replaces
# them with ./staging paths, so `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` cannot work.
# We pin each staging module to its published v0.N.P instead, generated from that version's go.mod.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${DOWNTIME_CACHE:-$HOME/.cache/downtime-operator}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

APISERVER="$BIN/kube-apiserver-$K8S_VERSION"
ETCD="$BIN/etcd-$ETCD_VERSION"

build_apiserver() {
  local work staging_minor gomod
  work="$(mktemp -d)"
  staging_minor="v0.${K8S_VERSION#v1.}"
  cd "$work"
  go mod init downtime-operator/kube-wrapper >/dev/null 2>&1
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  # Every `k8s.io/x => ./staging/src/k8s.io/x` line becomes a pin to the published module.
  grep -Eo 'k8s\.io/[A-Za-z0-9._/-]+ => \./staging/src/k8s\.io/[A-Za-z0-9._/-]+' "$gomod" \
    | awk '{print $1}' | sort -u | while read -r mod; do
      go mod edit -replace="$mod=$mod@$staging_minor"
    done
  cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  go mod tidy >/dev/null
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local major minor; major=1; minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  CGO_ENABLED=0 go build -o "$APISERVER.tmp" -ldflags "-s -w \
    -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=$major \
    -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/component-base/version.buildDate=$date" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv "$APISERVER.tmp" "$APISERVER"
  rm -rf "$work"
}

build_etcd() {
  local work; work="$(mktemp -d)"
  cd "$work"
  go mod init downtime-operator/etcd-wrapper >/dev/null 2>&1
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy >/dev/null
  CGO_ENABLED=0 go build -o "$ETCD.tmp" -ldflags "-s -w" .
  mv "$ETCD.tmp" "$ETCD"
  rm -rf "$work"
}

[ -x "$ETCD" ] || (build_etcd)
[ -x "$APISERVER" ] || (build_apiserver)
echo "KUBE_APISERVER=$APISERVER"
echo "ETCD=$ETCD"
