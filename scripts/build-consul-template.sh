#!/usr/bin/env bash
# Builds consul-template (the templater benchmark's same-run baseline) from the
# Go module proxy and caches the binary in ~/.cache/gantry/bin. Idempotent: a
# cached binary is kept. `npm run bench -- templater` runs this on demand.
set -euo pipefail
. "$(dirname "$0")/versions.env"
VERSION="${CONSUL_TEMPLATE_VERSION}"
BIN_DIR="${GANTRY_BIN_DIR:-$HOME/.cache/gantry/bin}"
OUT="$BIN_DIR/consul-template-$VERSION"
if [[ -x "$OUT" ]]; then echo "consul-template $VERSION: cached at $OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-consul-template: go toolchain not found on PATH" >&2; exit 1; }
mkdir -p "$BIN_DIR"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gantry-ct-build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
echo "consul-template $VERSION: go install github.com/hashicorp/consul-template@v$VERSION (a few minutes on 2 cores)"
GOBIN="$WORK/bin" GOTOOLCHAIN=local CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/hashicorp/consul-template@v$VERSION"
mv "$WORK/bin/consul-template" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
"$OUT" -v 2>&1 | sed -n 1p
