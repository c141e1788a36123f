#!/usr/bin/env bash
# Build the stand-in kubelet (tools/stub-kubelet: the kubelet's real streaming library in front of
# local processes, so a real kube-apiserver can proxy exec/attach/port-forward/logs on machines
# without a kubelet) into a per-machine cache folder keyed by a hash of its source, and print the
# binary's path on the last line. TEST ONLY: it runs commands for anyone on loopback.
#
#   tools/build-stub-kubelet.sh              build if missing, print the binary's path
#   STUB_KUBELET=/path/to/bin tools/...      use a ready binary instead
#
# Its libraries come from the Go module proxy, pinned by tools/stub-kubelet/go.mod and go.sum
# (k8s.io/cri-streaming at the version matching KUBE_VERSION). Binaries never go into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${STUB_KUBELET:-}" ]; then
  [ -x "$STUB_KUBELET" ] || { echo "STUB_KUBELET=$STUB_KUBELET is not an executable" >&2; exit 1; }
  echo "using the ready stub-kubelet $STUB_KUBELET" >&2
  echo "$STUB_KUBELET"
  exit 0
fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.26, or set STUB_KUBELET to a stub-kubelet binary" >&2; exit 1; }

src="$here/stub-kubelet"
hash=$(cd "$src" && cat go.mod go.sum $(ls ./*.go | LC_ALL=C sort) | sha256sum | cut -c1-12)
bin="${XDG_CACHE_HOME:-$HOME/.cache}/kubegate/tools/stub-kubelet-$STUB_KUBELET_STREAMING_VERSION-$hash"
if [ -x "$bin/stub-kubelet" ]; then
  echo "stub-kubelet: cached in $bin" >&2
  echo "$bin/stub-kubelet"
  exit 0
fi
mkdir -p "$bin"
start=$SECONDS
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "stub-kubelet: building $hash" >&2
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/stub-kubelet" .) >&2
mv "$tmp/stub-kubelet" "$bin/stub-kubelet"   # atomic: a half-built binary never has the final name
echo "stub-kubelet: built in $((SECONDS - start))s" >&2
echo "$bin/stub-kubelet"
