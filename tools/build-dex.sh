#!/usr/bin/env bash
# Build Dex (the OpenID Connect provider the tests sign people in with) from the Go module proxy
# into a per-machine cache folder keyed by version, and print the binary's path on the last line.
#
#   tools/build-dex.sh                 build if missing, print the binary's path
#   DEX=/path/to/dex tools/...         use a ready binary instead
#
# Dex v2.45.1 is served by the proxy only as a pseudo-version (its v2.x tags lack a /v2 module
# path), and its go.mod replaces github.com/dexidp/dex/api/v2 with a local folder, so
# `go install dex@version` refuses it. tools/dex/go.mod is a wrapper module that requires both
# and names cmd/dex as a tool; this builds that package. Binaries never go into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${DEX:-}" ]; then
  [ -x "$DEX" ] || { echo "DEX=$DEX is not an executable" >&2; exit 1; }
  echo "using the ready dex $DEX" >&2
  echo "$DEX"
  exit 0
fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.26, or set DEX to a dex binary" >&2; exit 1; }

bin="${XDG_CACHE_HOME:-$HOME/.cache}/kubegate/tools/dex-$DEX_VERSION"
if [ -x "$bin/dex" ]; then
  echo "dex: cached in $bin" >&2
  echo "$bin/dex"
  exit 0
fi
mkdir -p "$bin"
start=$SECONDS
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "dex: building $DEX_VERSION (a first build takes several minutes)" >&2
(cd "$here/dex" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X main.version=$DEX_VERSION" -o "$tmp/dex" github.com/dexidp/dex/cmd/dex) >&2
mv "$tmp/dex" "$bin/dex"   # atomic: a half-built binary never has the final name
echo "dex: built in $((SECONDS - start))s" >&2
echo "$bin/dex"
