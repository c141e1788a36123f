#!/usr/bin/env bash
# Build the test control plane (kube-apiserver, kubectl, etcd) from the pinned Go modules
# into a per-machine cache folder keyed by version, and print that folder on the last line.
#
#   tools/build-control-plane.sh            build what is missing, print the bin folder
#   KUBEBUILDER_ASSETS=/dir tools/...       use ready binaries from /dir instead (envtest convention)
#
# Nothing is built when the binaries are already in the cache. Binaries never go into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in kube-apiserver kubectl etcd; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b" >&2; exit 1; }
  done
  echo "using ready binaries from KUBEBUILDER_ASSETS" >&2
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.26, or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver, kubectl and etcd" >&2; exit 1; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/kubegate/control-plane
bin="$cache/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$bin"

build() {  # build NAME MODULE_DIR PACKAGE GO_BUILD_FLAGS...
  local name=$1 dir=$2 pkg=$3; shift 3
  if [ -x "$bin/$name" ]; then
    echo "$name: cached in $bin" >&2
    return
  fi
  local start=$SECONDS tmp
  tmp=$(mktemp -d "$bin/.build.XXXXXX")
  echo "$name: building (a first build takes several minutes)" >&2
  (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath "$@" -o "$tmp/$name" "$pkg") >&2
  mv "$tmp/$name" "$bin/$name"   # atomic: a half-built binary never has the final name
  rmdir "$tmp"
  echo "$name: built in $((SECONDS - start))s" >&2
}

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver -tags notest,grpcnotrace -ldflags "$ld"
build kubectl kube k8s.io/kubernetes/cmd/kubectl -tags notest,grpcnotrace -ldflags "$ld"
build etcd etcd go.etcd.io/etcd/server/v3 -ldflags "-s -w"
echo "$bin"
