#!/usr/bin/env bash
# Installs what Gantry needs and is missing, idempotently (fast when all is there):
# Debian packages, Node 24 (when the machine's node is older), npm packages,
# Consul and kube-apiserver built from the Go module proxy, a running dockerd and
# the local test image. Used by `make up` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.env
step() { printf '==> %s\n' "$*"; }

# 1. Debian packages (binary name -> package)
declare -A PKG=(
  [haproxy]=haproxy [redis-server]=redis-server [redis-sentinel]=redis-sentinel [etcd]=etcd-server [dnsmasq]=dnsmasq-base
  [dockerd]=docker.io [socat]=socat [ip]=iproute2 [wrk]=wrk [busybox]=busybox-static
  [openssl]=openssl [docker-compose]=docker-compose [curl]=curl [dig]=dnsutils [java]=default-jre-headless
  [chromium]=chromium
)
missing=()
for bin in "${!PKG[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || [[ -x "/usr/sbin/$bin" || -x "/sbin/$bin" ]] || missing+=("${PKG[$bin]}")
done
[[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper)
# Apache Curator (the ZooKeeper client Dubbo 2.7+ uses): the tests' Dubbo consumer
[[ -f /usr/share/java/curator-recipes.jar ]] || missing+=(libcurator-framework-java libcurator-recipes-java)
# Curator's ServiceDiscovery: the tests' Dubbo 3 application-level provider
[[ -f /usr/share/java/curator-x-discovery.jar ]] || missing+=(libcurator-discovery-java)
if ((${#missing[@]})); then
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Node 24 (the npm registry ships it as the package `node`)
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( major < NODE_MAJOR )) && [[ ! -x .tools/node_modules/.bin/node ]]; then
  step "installing Node $NODE_MAJOR into .tools (machine has node $major)"
  npm install --prefix .tools --no-save --no-audit --no-fund "node@$NODE_MAJOR" >/dev/null
fi
export PATH="$PWD/.tools/node_modules/.bin:$PATH"
step "node $(node --version)"

# 3. npm packages (only when package-lock.json changed since the last install)
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  step "npm ci"
  npm ci --no-audit --no-fund >/dev/null
fi

# 4. engines built from source, cached in ~/.cache/gantry/bin
step "consul $CONSUL_VERSION"
bash scripts/build-consul.sh
step "kube-apiserver $KUBE_VERSION"
bash scripts/build-kube-apiserver.sh

# 5. the Docker engine and the local test image
step "docker engine"
bash scripts/ensure-dockerd.sh
step "dependencies ready"
