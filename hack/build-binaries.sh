#!/usr/bin/env bash
# Build the local cluster's real components (and helm) from Go modules, once per machine.
#
# Each component is built and cached on its own, keyed by its wrapper module (hack/gobuild/<c>/go.mod
# and go.sum), its build recipe below and the Go version:
#   $KSTUDIO_CACHE/bin/parts/<component>-<key>/   kubernetes (kube-apiserver, kube-controller-manager,
#                                                 kube-scheduler, kube-proxy, kubectl), etcd, minio, helm
# so bumping one module rebuilds only that component. The one directory the tests and
# kstudio_localcluster read, $KSTUDIO_CACHE/bin/<key>/ (<key> hashes the component keys), holds hard
# links to all eight binaries; it is printed on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KSTUDIO_CACHE:-$HOME/.cache/kstudio}"
k8s_version="v1.36.3"
helm_version="v4.3.1"
goversion="$(go version)"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { echo "build-binaries: $*" >&2; }

components=(kubernetes etcd minio helm)
binaries_of() {
  case "$1" in
    kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl ;;
    *) echo "$1" ;;
  esac
}

# The build of one component into directory $2. Its text is part of the component's key.
recipe() {
  case "$1" in
    kubernetes) cat <<EOF
go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
-X k8s.io/client-go/pkg/version.gitVersion=$k8s_version" -o "\$out/" \
k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
EOF
      ;;
    etcd) echo 'go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3' ;;
    minio) echo 'go build -trimpath -ldflags "-s -w" -o "$out/minio" github.com/minio/minio' ;;
    helm) echo "go build -trimpath -ldflags \"-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version \
-X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean\" \
-o \"\$out/helm\" helm.sh/helm/v4/cmd/helm" ;;
  esac
}

component_key() {
  (echo "$goversion"; echo "CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"; recipe "$1"
    cat "$here/gobuild/$1/go.mod" "$here/gobuild/$1/go.sum") | sha256sum | cut -c1-16
}

# Binaries built by the previous single-key layout of this script (bin/829fc5c1ddef43e7, go1.26.8,
# the same kubernetes/etcd/minio modules and flags): adopted by hard link when a component's key is
# the one those modules give, so that layout change costs no rebuild.
declare -A adopt=(
  [kubernetes-b823401b27f1b165]="$cache/bin/829fc5c1ddef43e7"
  [etcd-3e03314411036e25]="$cache/bin/829fc5c1ddef43e7"
  [minio-c6fbf964e1717641]="$cache/bin/829fc5c1ddef43e7"
)

complete() { # dir binaries...
  local d="$1"; shift
  for b in "$@"; do [ -x "$d/$b" ] || return 1; done
}

link_all() { # from to binaries...
  local from="$1" to="$2"; shift 2
  for b in "$@"; do ln -f "$from/$b" "$to/$b" 2>/dev/null || cp -f "$from/$b" "$to/$b"; done
}

keys=""
parts=()
all=()
for c in "${components[@]}"; do
  k="$(component_key "$c")"
  keys+="$c-$k "
  parts+=("$cache/bin/parts/$c-$k")
  read -r -a bins <<<"$(binaries_of "$c")"
  all+=("${bins[@]}")
done
bin="$cache/bin/$(echo "$keys" | sha256sum | cut -c1-16)"
if complete "$bin" "${all[@]}"; then echo "$bin"; exit 0; fi

# One builder at a time (concurrent test sessions call this script); the others wait, then reuse.
mkdir -p "$cache/bin"
exec 9>"$cache/bin/.lock"
flock 9

for i in "${!components[@]}"; do
  c="${components[$i]}"
  part="${parts[$i]}"
  k="${part##*/$c-}"
  read -r -a bins <<<"$(binaries_of "$c")"
  complete "$part" "${bins[@]}" && continue
  rm -rf "$part.partial"
  mkdir -p "$part.partial"
  legacy="${adopt[$c-$k]:-}"
  if [ -n "$legacy" ] && complete "$legacy" "${bins[@]}"; then
    log "$c: adopting $legacy"
    link_all "$legacy" "$part.partial" "${bins[@]}"
  else
    log "$c: building (kubernetes about 5 min cold on 2 cores, helm about 2 min, etcd/minio 1-2 min)"
    start=$SECONDS
    (cd "$here/gobuild/$c" && out="$part.partial" && eval "$(recipe "$c")")
    log "$c: built in $((SECONDS - start)) s"
  fi
  rm -rf "$part"
  mv "$part.partial" "$part"
done

if ! complete "$bin" "${all[@]}"; then
  rm -rf "$bin.partial"
  mkdir -p "$bin.partial"
  for i in "${!components[@]}"; do
    read -r -a bins <<<"$(binaries_of "${components[$i]}")"
    link_all "${parts[$i]}" "$bin.partial" "${bins[@]}"
  done
  rm -rf "$bin"
  mv "$bin.partial" "$bin"
  log "assembled $bin"
fi
echo "$bin"
