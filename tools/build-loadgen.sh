#!/usr/bin/env bash
# Build benchmark 15's Go programs, bench/loadgen (the load generator that drives kubegate and
# Dex alike) and bench/goexchange (the plain Go exchange: the floor), into a per-machine cache
# folder keyed by a hash of their sources, and print that folder's path on the last line
# (it holds `loadgen` and `goexchange`).
#
#   tools/build-loadgen.sh                     build if missing, print the folder
#   LOADGEN_DIR=/path/to/folder tools/...      use ready binaries instead
#
# The modules' go.sum pins every dependency (google.golang.org/grpc, protobuf); the Go module
# proxy serves them on a first build. Nothing is built when the folder is already in the
# cache: any change to a source file changes the hash. Binaries never go into the repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$(cd "$here/../bench" && pwd)
programs=(loadgen goexchange)

if [ -n "${LOADGEN_DIR:-}" ]; then
  for program in "${programs[@]}"; do
    [ -x "$LOADGEN_DIR/$program" ] || { echo "LOADGEN_DIR=$LOADGEN_DIR has no executable $program" >&2; exit 1; }
  done
  echo "using the ready load generator in $LOADGEN_DIR" >&2
  echo "$LOADGEN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "go is not installed: install Go >= 1.26, or set LOADGEN_DIR to a folder with loadgen and goexchange" >&2; exit 1; }

hash=$(cd "$bench" && find "${programs[@]}" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
bin="${XDG_CACHE_HOME:-$HOME/.cache}/kubegate/tools/loadgen-$hash"
if [ -x "$bin/loadgen" ] && [ -x "$bin/goexchange" ]; then
  echo "loadgen: cached in $bin" >&2
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"
start=$SECONDS
tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for program in "${programs[@]}"; do
  echo "loadgen: building $program ($hash)" >&2
  (cd "$bench/$program" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$tmp/$program" .) >&2
done
for program in "${programs[@]}"; do
  mv "$tmp/$program" "$bin/$program"   # atomic: a half-built binary never has the final name
done
echo "loadgen: built in $((SECONDS - start))s" >&2
echo "$bin"
