#!/usr/bin/env bash
# Build the local cluster's real components (and helm) from Go modules, once per machine.
#
#   bash hack/build-binaries.sh            the cluster: kubernetes, etcd, minio (what `make demo` needs)
#   bash hack/build-binaries.sh helm       the same plus helm (the chart test, `make test`)
#   bash hack/build-binaries.sh kwok       the same plus kwok (simulated nodes: `cluster up --fake-nodes N`)
#   bash hack/build-binaries.sh --check    exit 0 and print the directory if already built, 1 otherwise
#
# Each component is built and cached on its own, keyed by its wrapper module (hack/gobuild/<c>/go.mod
# and go.sum), its build recipe below and the Go version:
#   $KSTUDIO_CACHE/bin/parts/<component>-<key>/   kubernetes (kube-apiserver, kube-controller-manager,
#                                                 kube-scheduler, kube-proxy, kubectl), etcd, minio, helm,
#                                                 kwok
# so bumping one module rebuilds only that component. The one directory the tests and
# kstudio_localcluster read, $KSTUDIO_CACHE/bin/<key>/ (<key> hashes the cluster components' keys), holds
# hard links to the binaries (helm's and kwok's once they are built); it is printed on stdout.
#
# Cold, the missing components build concurrently: each downloads its modules while the others compile,
# so the network and both cores stay busy; helm and kwok run at a lower CPU priority so the cluster's
# components finish first. Progress goes to stderr with an estimate per component (the last build's time on
# this machine, kept in $KSTUDIO_CACHE/bin/timings); each build's output is in parts/<c>-<key>.log.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KSTUDIO_CACHE:-$HOME/.cache/kstudio}"
k8s_version="v1.36.3"
helm_version="v4.3.1"
command -v go >/dev/null || { echo "build-binaries: go not found: run  bash hack/prereqs.sh" >&2; exit 1; }
goversion="$(go version)"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { echo "build-binaries: $*" >&2; }

check=0
components=(kubernetes etcd minio)
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    helm | kwok) components+=("$arg") ;;
    *) echo "usage: build-binaries.sh [--check] [helm] [kwok]" >&2; exit 2 ;;
  esac
done
cluster_components=(kubernetes etcd minio)
# Built only when asked for, linked into the cluster's directory next to its binaries.
extra_components=(helm kwok)

binaries_of() {
  case "$1" in
    kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl ;;
    *) echo "$1" ;;
  esac
}

# Seconds a cold concurrent build of each component took on the reference machine (2 cores shared with
# other work, 2026-12-02), used until this machine has its own figure in $cache/bin/timings.
default_estimate() {
  case "$1" in kubernetes) echo 1540 ;; minio) echo 930 ;; helm) echo 550 ;; kwok) echo 180 ;; *) echo 380 ;; esac
}

# The build of one component into directory $out. Its text is part of the component's key.
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
    kwok) echo 'go build -trimpath -ldflags "-s -w" -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok' ;;
  esac
}

component_key() {
  (echo "$goversion"; echo "CGO_ENABLED=$CGO_ENABLED GOFLAGS=$GOFLAGS"; recipe "$1"
    cat "$here/gobuild/$1/go.mod" "$here/gobuild/$1/go.sum") | sha256sum | cut -c1-16
}

complete() { # dir binaries...
  local d="$1"; shift
  for b in "$@"; do [ -x "$d/$b" ] || return 1; done
}

link_all() { # from to binaries...
  local from="$1" to="$2"; shift 2
  for b in "$@"; do ln -f "$from/$b" "$to/$b" 2>/dev/null || cp -f "$from/$b" "$to/$b"; done
}

declare -A part_of
keys=""
for c in "${cluster_components[@]}" "${extra_components[@]}"; do
  k="$(component_key "$c")"
  part_of[$c]="$cache/bin/parts/$c-$k"
  [[ " ${extra_components[*]} " == *" $c "* ]] || keys+="$c-$k "
done
bin="$cache/bin/$(echo "$keys" | sha256sum | cut -c1-16)"

wanted=()
for c in "${components[@]}"; do
  read -r -a bins <<<"$(binaries_of "$c")"
  wanted+=("${bins[@]}")
done
same_file() { [ "$(stat -c %i "$1" 2>/dev/null)" = "$(stat -c %i "$2" 2>/dev/null)" ]; }
wants() { [[ " ${components[*]} " == *" $1 "* ]]; }
ready() { # the assembled directory holds every wanted binary, helm's and kwok's from their current part
  complete "$bin" "${wanted[@]}" || return 1
  for c in "${extra_components[@]}"; do
    ! wants "$c" || same_file "$bin/$c" "${part_of[$c]}/$c" || return 1
  done
}
if ready; then echo "$bin"; exit 0; fi
[ "$check" -eq 0 ] || exit 1

missing=()
for c in "${components[@]}"; do
  read -r -a bins <<<"$(binaries_of "$c")"
  complete "${part_of[$c]}" "${bins[@]}" || missing+=("$c")
done

# One builder at a time (concurrent test sessions call this script); the others wait, then reuse.
# Assembling links from built parts needs no lock: a session never waits for a build it does not need.
mkdir -p "$cache/bin/parts"
exec 9>"$cache/bin/.lock"
if [ ${#missing[@]} -gt 0 ] && ! flock -n 9; then
  log "another build is running; waiting for it (lock $cache/bin/.lock)"
  flock 9
fi

timings="$cache/bin/timings"
touch "$timings"
estimate() { awk -v c="$1" '$1 == c {s = $2} END {print s}' "$timings" | grep . || default_estimate "$1"; }

build_one() { # component: builds into its part directory, output to part.log
  local c="$1" part="${part_of[$1]}" start=$SECONDS
  rm -rf "$part.partial"
  mkdir -p "$part.partial"
  local prio=0
  [[ " ${extra_components[*]} " == *" $c "* ]] && prio=10  # the cluster's components first
  local bins
  read -r -a bins <<<"$(binaries_of "$c")"
  # The recipe's $out is the child shell's: pass it in its environment.
  if (cd "$here/gobuild/$c" && out="$part.partial" nice -n "$prio" bash -c "go mod download && $(recipe "$c")") \
    >"$part.log" 2>&1 && complete "$part.partial" "${bins[@]}"; then
    rm -rf "$part"
    mv "$part.partial" "$part"
    echo "$c $((SECONDS - start))" >>"$timings"
    log "$c: built in $((SECONDS - start)) s"
  else
    log "$c: FAILED after $((SECONDS - start)) s; last lines of $part.log:"
    tail -n 15 "$part.log" >&2
    return 1
  fi
}

pids=()
names=()
started=$SECONDS
for c in "${missing[@]}"; do
  read -r -a bins <<<"$(binaries_of "$c")"
  complete "${part_of[$c]}" "${bins[@]}" && continue  # built by the session we waited for
  log "$c: building (about $(( ($(estimate "$c") + 59) / 60 )) min cold here; log ${part_of[$c]}.log)"
  build_one "$c" &
  pids+=($!)
  names+=("$c")
done

failed=()
if [ ${#pids[@]} -gt 0 ]; then
  # Heartbeat while anything builds: which are done, which still run against their estimate.
  (
    while sleep 60; do
      line=""
      for c in "${names[@]}"; do
        if [ -d "${part_of[$c]}" ]; then line+=" $c done;"
        else line+=" $c building (est. $(( ($(estimate "$c") + 59) / 60 )) min);"; fi
      done
      log "$(( (SECONDS - started) / 60 )) min elapsed:${line%;}"
    done
  ) &
  heartbeat=$!
  for i in "${!pids[@]}"; do
    c="${names[$i]}"
    wait "${pids[$i]}" || failed+=("$c")
  done
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
fi
if [ ${#failed[@]} -gt 0 ]; then
  log "building ${failed[*]} failed (logs above); rerun: bash hack/build-binaries.sh"
  exit 1
fi

cluster_bins=()
for c in "${cluster_components[@]}"; do
  read -r -a bins <<<"$(binaries_of "$c")"
  cluster_bins+=("${bins[@]}")
done
if ! complete "$bin" "${cluster_bins[@]}"; then
  partial="$bin.partial.$$"
  rm -rf "$partial"
  mkdir -p "$partial"
  for c in "${cluster_components[@]}"; do
    read -r -a bins <<<"$(binaries_of "$c")"
    link_all "${part_of[$c]}" "$partial" "${bins[@]}"
  done
  rm -rf "$bin"
  mv -T "$partial" "$bin" 2>/dev/null || rm -rf "$partial"  # a concurrent session assembled it first
  log "assembled $bin"
fi
for c in "${extra_components[@]}"; do
  ! wants "$c" || link_all "${part_of[$c]}" "$bin" "$c"
done
echo "$bin"
