#!/usr/bin/env bash
# Builds kube-apiserver from k8s.io/kubernetes on the Go module proxy and caches it.
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/apiserver, ...)
# with ./staging/src/k8s.io/<name>, which the module zip leaves out; each staging
# module is published as k8s.io/<name>@v0.<minor>.<patch> from the same release,
# so we download those and lay them out where the replace directives point.
set -euo pipefail
. "$(dirname "$0")/versions.env"
VERSION="${KUBE_VERSION}"
BIN_DIR="${GANTRY_BIN_DIR:-$HOME/.cache/gantry/bin}"
OUT="$BIN_DIR/kube-apiserver-$VERSION"
# a binary built without the version stamp reports v0.0.0-master: rebuild it
if [[ -x "$OUT" ]] && [[ "$("$OUT" --version 2>/dev/null)" == "Kubernetes v$VERSION" ]]; then
  echo "kube-apiserver $VERSION: cached at $OUT"; exit 0
fi
command -v go >/dev/null || { echo "build-kube-apiserver: go toolchain not found on PATH" >&2; exit 1; }
mkdir -p "$BIN_DIR"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gantry-kube-build.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
# k8s ships a go.work; we build the module itself, its replace directives pointing at staging/
export GOFLAGS=-mod=mod GOTOOLCHAIN=local GONOSUMDB=k8s.io GONOSUMCHECK=1 GOWORK=off
STAGING_VERSION="v0.${VERSION#1.}"
dir_of() { (cd "$WORK" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'); }
echo "kube-apiserver $VERSION: downloading k8s.io/kubernetes@v$VERSION"
ROOT_DIR="$(dir_of "k8s.io/kubernetes@v$VERSION")"
[[ -n "$ROOT_DIR" ]] || { echo "kube-apiserver: k8s.io/kubernetes@v$VERSION not served" >&2; exit 1; }
cp -r "$ROOT_DIR" "$WORK/src"; chmod -R u+w "$WORK/src"
grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$WORK/src/go.mod" | while read -r mod _ rel; do
  echo "kube-apiserver $VERSION: staging $mod@$STAGING_VERSION -> $rel"
  d="$(dir_of "$mod@$STAGING_VERSION" || true)"
  rm -rf "$WORK/src/$rel"; mkdir -p "$(dirname "$WORK/src/$rel")"
  if [[ -n "$d" ]]; then
    cp -r "$d" "$WORK/src/$rel"; chmod -R u+w "$WORK/src/$rel"
  else
    # not served by the proxy (e.g. the sample-* modules); kube-apiserver imports
    # none of their packages, so an empty module satisfies the module graph
    echo "kube-apiserver $VERSION:   (not served; kube-apiserver does not import it: empty module)"
    mkdir -p "$WORK/src/$rel"; printf 'module %s\n\ngo 1.24\n' "$mod" > "$WORK/src/$rel/go.mod"
  fi
done
echo "kube-apiserver $VERSION: compiling (the heaviest build: 10+ minutes on 2 cores)"
cd "$WORK/src"
# stamp the version as hack/lib/version.sh does, so --version and /version report it
LDFLAGS="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  LDFLAGS+=" -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=${VERSION%%.*}"
  MINOR="${VERSION#*.}"; LDFLAGS+=" -X $pkg.gitMinor=${MINOR%%.*} -X $pkg.gitTreeState=clean"
  LDFLAGS+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
START=$SECONDS
go build -trimpath -ldflags "$LDFLAGS" -o "$OUT.tmp" ./cmd/kube-apiserver > "$WORK/build.log" 2>&1 &
BUILD_PID=$!
NEXT=60
while kill -0 "$BUILD_PID" 2>/dev/null; do
  sleep 2
  if (( SECONDS - START >= NEXT )); then
    echo "kube-apiserver $VERSION:   still compiling ($(( NEXT / 60 )) min)"; NEXT=$(( NEXT + 60 ))
  fi
done
if ! wait "$BUILD_PID"; then
  tail -n 40 "$WORK/build.log" >&2
  echo "kube-apiserver $VERSION: go build failed" >&2
  exit 1
fi
mv "$OUT.tmp" "$OUT"
echo "kube-apiserver $VERSION: built in $(( SECONDS - START )) s"
"$OUT" --version
