#!/usr/bin/env bash
# Build helm (the tests lint and render the chart in deploy/helm/kubegate, and apply what it
# renders to the real API server) from the pinned Go module helm.sh/helm/v3 into a per-machine
# cache folder keyed by version, and print the binary's path on the last line.
#
#   tools/build-helm.sh                 build if missing, print the binary's path
#   HELM=/path/to/helm tools/...        use a ready binary instead
#
# Nothing is built when the binary is already in the cache. Binaries never go into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${HELM:-}" ]; then
  [ -x "$HELM" ] || { echo "HELM=$HELM is not an executable" >&2; exit 1; }
  echo "using the ready helm $HELM" >&2
  echo "$HELM"
  exit 0
fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.26, or set HELM to a helm binary" >&2; exit 1; }

bin="${XDG_CACHE_HOME:-$HOME/.cache}/kubegate/tools/helm-$HELM_VERSION"
if [ -x "$bin/helm" ]; then
  echo "helm: cached in $bin" >&2
  echo "$bin/helm"
  exit 0
fi
mkdir -p "$bin"
start=$SECONDS
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "helm: building $HELM_VERSION (a first build takes a few minutes)" >&2
# module mode from a neutral folder: no go.mod of this repository takes part
(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2
mv "$tmp/helm" "$bin/helm"   # atomic: a half-built binary never has the final name
echo "helm: built in $((SECONDS - start))s" >&2
echo "$bin/helm"
