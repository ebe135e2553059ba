#!/usr/bin/env bash
# Build the local cluster's real components from Go modules, once per machine.
#
# Output: $KSTUDIO_CACHE/bin/<key>/{kube-apiserver,kube-controller-manager,kube-scheduler,
# kube-proxy,kubectl,etcd,minio}, where <key> hashes the wrapper modules and the Go version, so a
# version bump rebuilds and an unchanged tree reuses. Prints the bin directory on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KSTUDIO_CACHE:-$HOME/.cache/kstudio}"
k8s_version="v1.36.3"

key="$( (go version; cat "$here"/gobuild/*/go.mod "$here"/gobuild/*/go.sum "$0") | sha256sum | cut -c1-16)"
bin="$cache/bin/$key"
wanted=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd minio)

missing=()
for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "$bin"; exit 0; fi

mkdir -p "$bin.partial"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { echo "build-binaries: $*" >&2; }
start=$SECONDS

need() { [[ " ${missing[*]} " == *" $1 "* ]]; }

if need kube-apiserver || need kube-controller-manager || need kube-scheduler || need kube-proxy || need kubectl; then
  log "kubernetes $k8s_version (about 4 min cold on 2 cores)"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
-X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
  (cd "$here/gobuild/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$bin.partial/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
fi
if need etcd; then
  log "etcd v3.6.16"
  (cd "$here/gobuild/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/etcd" go.etcd.io/etcd/server/v3)
fi
if need minio; then
  log "minio"
  (cd "$here/gobuild/minio" && go build -trimpath -ldflags "-s -w" -o "$bin.partial/minio" github.com/minio/minio)
fi

mkdir -p "$bin"
for b in "$bin.partial"/*; do mv -f "$b" "$bin/"; done
rmdir "$bin.partial" 2>/dev/null || true
log "done in $((SECONDS - start)) s -> $bin"
echo "$bin"
