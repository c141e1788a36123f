#!/usr/bin/env bash
# Regenerate the wrapper go.mod/go.sum files that pin the test control plane.
#
# kube/: k8s.io/kubernetes requires every staging module at v0.0.0 and replaces it with
# ./staging/...; a consumer must replace each one with its published tag (v1.X.Y <=> v0.X.Y).
# The list of staging modules is read from k8s.io/kubernetes's own go.mod, fetched through
# the Go module proxy, so it follows upstream instead of being hard-coded.
# etcd/: go.etcd.io/etcd/server/v3 is itself package main; it only needs a require.
#
# Usage: tools/update-gomod.sh [K8S_VERSION] [ETCD_VERSION]   (defaults: tools/versions.env)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
K8S=${1:-$KUBE_VERSION}
ETCD=${2:-$ETCD_VERSION}
STG=v0.${K8S#v1.}

gomod=$(cd "$(mktemp -d)" && go mod init tmp >/dev/null 2>&1 &&
  go mod download -json "k8s.io/kubernetes@$K8S" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')

cd "$here/kube"
printf 'module kubegate.invalid/testbins/kube\n\ngo 1.26.0\n' > go.mod
rm -f go.sum
for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
  go mod edit "-replace=$m=$m@$STG"
done
go get "k8s.io/kubernetes@$K8S"
go get -tool k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
go mod tidy

cd "$here/etcd"
printf 'module kubegate.invalid/testbins/etcd\n\ngo 1.26.0\n' > go.mod
rm -f go.sum
go get -tool "go.etcd.io/etcd/server/v3@$ETCD"
go mod tidy
echo "pinned k8s.io/kubernetes $K8S (staging $STG) and etcd $ETCD"
