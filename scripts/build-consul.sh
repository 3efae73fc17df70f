#!/usr/bin/env bash
# Builds the Consul agent from the Go module proxy and caches the binary.
# Consul's go.mod replaces its submodules (api, sdk, ...) with ./dirs that the
# module zip does not contain, so `go install consul@v` refuses. We download the
# root module and each submodule at the version the root requires, lay them out
# as the replace directives expect, and build from that writable copy.
set -euo pipefail
. "$(dirname "$0")/versions.env"
VERSION="${CONSUL_VERSION}"
BIN_DIR="${GANTRY_BIN_DIR:-$HOME/.cache/gantry/bin}"
OUT="$BIN_DIR/consul-$VERSION"
if [[ -x "$OUT" ]]; then echo "consul $VERSION: cached at $OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-consul: go toolchain not found on PATH" >&2; exit 1; }
mkdir -p "$BIN_DIR"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gantry-consul-build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
# The submodules are checked against the checksums the root go.sum pins, not the
# public checksum database (which does not list every consul submodule tag).
export GOFLAGS=-mod=mod GOTOOLCHAIN=local GONOSUMDB=github.com/hashicorp/consul GONOSUMCHECK=1
echo "consul $VERSION: downloading module github.com/hashicorp/consul@v$VERSION"
dir_of() { (cd "$WORK" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'); }
ROOT_DIR="$(dir_of "github.com/hashicorp/consul@v$VERSION")"
cp -r "$ROOT_DIR" "$WORK/src"; chmod -R u+w "$WORK/src"
# each replace "=> ./sub" gets the submodule at the version the require block names
grep -E '^\s*github.com/hashicorp/consul/[a-z-]+ => \./' "$WORK/src/go.mod" | while read -r mod _ rel; do
  ver="$(grep -E "^\s*${mod} v" "$WORK/src/go.mod" | awk '{print $2; exit}')"
  echo "consul $VERSION: submodule $mod@$ver -> $rel"
  d="$(dir_of "$mod@$ver")"
  rm -rf "$WORK/src/$rel"; cp -r "$d" "$WORK/src/$rel"; chmod -R u+w "$WORK/src/$rel"
done
echo "consul $VERSION: compiling (several minutes on 2 cores; progress follows)"
cd "$WORK/src"
go build -trimpath -ldflags "-s -w" -o "$OUT.tmp" . 2>&1 | tail -n 40
mv "$OUT.tmp" "$OUT"
"$OUT" version | sed -n 1p
