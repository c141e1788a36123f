#!/usr/bin/env bash
# Build actionlint (the linter of GitHub Actions workflows) from the pinned Go module
# github.com/rhysd/actionlint into a per-machine cache folder keyed by version, and print the
# binary's path on the last line. The tests run it on .github/workflows/ and the examples.
#
#   tools/build-actionlint.sh                     build if missing, print the binary's path
#   ACTIONLINT=/path/to/actionlint tools/...      use a ready binary instead
#
# Nothing is built when the binary is already in the cache. Binaries never go into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

if [ -n "${ACTIONLINT:-}" ]; then
  [ -x "$ACTIONLINT" ] || { echo "ACTIONLINT=$ACTIONLINT is not an executable" >&2; exit 1; }
  echo "using the ready actionlint $ACTIONLINT" >&2
  echo "$ACTIONLINT"
  exit 0
fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.26, or set ACTIONLINT to an actionlint binary" >&2; exit 1; }

bin="${XDG_CACHE_HOME:-$HOME/.cache}/kubegate/tools/actionlint-$ACTIONLINT_VERSION"
if [ -x "$bin/actionlint" ]; then
  echo "actionlint: cached in $bin" >&2
  echo "$bin/actionlint"
  exit 0
fi
mkdir -p "$bin"
start=$SECONDS
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "actionlint: building $ACTIONLINT_VERSION" >&2
# module mode from a neutral folder: no go.mod of this repository takes part
(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
  "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION") >&2
mv "$tmp/actionlint" "$bin/actionlint"   # atomic: a half-built binary never has the final name
echo "actionlint: built in $((SECONDS - start))s" >&2
echo "$bin/actionlint"
