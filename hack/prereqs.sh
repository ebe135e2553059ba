#!/usr/bin/env bash
# What `make demo`, `make test`, `make cluster-up` and .ci/run need, checked before anything long starts.
#
#   bash hack/prereqs.sh <make target>
#
# Checks root, the Debian packages the local cluster runs (the list is kstudio_localcluster/hosttools.py's,
# a unit test keeps them equal), for `make test` Chromium (the console's browser tests), Python 3.11, uv, Go >= 1.26 and free disk. As root it installs missing
# Debian packages (apt-get update + install) and uv; otherwise, or for what it cannot install, it stops at
# once with one line naming the command to run. Silent when everything is there.
set -euo pipefail
target="${1:-demo}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KSTUDIO_CACHE:-$HOME/.cache/kstudio}"
stop() { echo "prereqs: $*" >&2; exit 1; }
note() { echo "prereqs: $*" >&2; }
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# Root first: without it nothing else can be fixed here, and the answer is one command.
if [ "$(id -u)" -ne 0 ]; then
  stop "make $target needs root (the local cluster creates network namespaces, cgroups and nftables rules): run  sudo env \"PATH=\$PATH\" make $target"
fi

# Debian packages of the host programs the cluster runs: program (name or absolute path) -> package.
tools=(
  nft:nftables
  /usr/lib/cni/bridge:containernetworking-plugins
  /usr/lib/cni/host-local:containernetworking-plugins
  /usr/lib/cni/loopback:containernetworking-plugins
  openssl:openssl
  ip:iproute2
  sysctl:procps
  nsenter:util-linux
)
need=()
for entry in "${tools[@]}"; do
  prog="${entry%%:*}" pkg="${entry#*:}"
  if [[ "$prog" == /* ]]; then [ -x "$prog" ] && continue; else command -v "$prog" >/dev/null && continue; fi
  [[ " ${need[*]-} " == *" $pkg "* ]] || need+=("$pkg")
done
# `make test` also drives a real browser: Debian's Chromium, for the console's tests
# (tests/operator/test_console_browser.py; Playwright's own browser download is not used).
if [ "$target" = test ] && [ ! -x /usr/bin/chromium ]; then need+=(chromium fonts-liberation); fi
python=python3.11
command -v "$python" >/dev/null || need+=(python3.11)
# uv comes from pip; Debian's python3.11 has no pip of its own.
if ! command -v uv >/dev/null && ! "$python" -m pip --version >/dev/null 2>&1; then need+=(python3-pip); fi
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || stop "missing ${need[*]} and no apt-get here: install these Debian packages' equivalents"
  note "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || stop "apt-get update failed: run  apt-get update  and fix what it reports"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || stop "apt-get install ${need[*]} failed: run  apt-get install ${need[*]}  to see why"
fi

version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
[ "$version" = "3.11" ] || stop "python3.11 does not run (got '${version}'): apt-get install python3.11"

if ! command -v uv >/dev/null; then
  note "installing uv (pip)"
  "$python" -m pip install --quiet 'uv>=0.13,<0.14' 2>/dev/null \
    || "$python" -m pip install --quiet --break-system-packages 'uv>=0.13,<0.14' \
    || stop "uv not found and pip could not install it: run  $python -m pip install 'uv>=0.13,<0.14'"
  command -v uv >/dev/null || stop "uv installed but not on PATH: add $("$python" -m site --user-base)/bin or /usr/local/bin to PATH"
fi

go_hint="install Go >= 1.26 from https://go.dev/dl/ (tar -C /usr/local -xzf go1.26.*.linux-amd64.tar.gz) and add /usr/local/go/bin to PATH"
command -v go >/dev/null || stop "go not found: $go_hint"
gov="$(go env GOVERSION 2>/dev/null || true)"
[[ "$gov" =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 26 ] || stop "go is $gov, need >= 1.26: $go_hint"

# Free disk: a cold Go build fills the module and build caches; later runs need little.
free_gib() { df -Pk "$1" | awk 'NR==2 {print int($4 / 1048576)}'; }
mkdir -p "$cache"
if bash "$here/build-binaries.sh" --check >/dev/null 2>&1; then want=2; else want=8; fi
for dir in "$cache" "$(go env GOCACHE)" "$(go env GOMODCACHE)"; do
  while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
  have="$(free_gib "$dir")"
  [ "$have" -ge "$want" ] || stop "only ${have} GiB free on $(df -P "$dir" | awk 'NR==2 {print $6}') ($dir), need ${want} GiB: free some space"
done
