#!/usr/bin/env bash
# Makes sure a Docker engine answers on /var/run/docker.sock (starting dockerd as
# root when none does) and that the local test image exists. No image registry is
# reachable, so the image is made with `docker import` from Debian's busybox-static.
set -euo pipefail
IMAGE="${GANTRY_TEST_IMAGE:-gantry/busybox:test}"
LOG="${GANTRY_DOCKERD_LOG:-/var/log/gantry-dockerd.log}"

if ! docker info >/dev/null 2>&1; then
  echo "docker: no engine answers; starting dockerd (log $LOG)"
  command -v dockerd >/dev/null || { echo "docker: dockerd not installed (apt-get install docker.io)" >&2; exit 1; }
  # containerd first when the package ships it separately
  if command -v containerd >/dev/null && ! pgrep -x containerd >/dev/null; then
    setsid nohup containerd >>"${LOG%.log}-containerd.log" 2>&1 </dev/null &
    sleep 1
  fi
  # default flags (iptables on, docker0 bridge, overlay2) work on this sandbox;
  # GANTRY_DOCKERD_FLAGS adds others (e.g. --iptables=false) where they do not
  # shellcheck disable=SC2086
  setsid nohup dockerd ${GANTRY_DOCKERD_FLAGS:-} >>"$LOG" 2>&1 </dev/null &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { echo "docker: dockerd exited" >&2; break; }
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    echo "docker: dockerd does not answer (waited up to 30 s); last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
fi
echo "docker: engine $(docker version --format '{{.Server.Version}}') answers"

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "docker: making test image $IMAGE from busybox-static"
  BUSYBOX="$(command -v busybox || echo /bin/busybox)"
  [[ -x "$BUSYBOX" ]] || { echo "docker: busybox not installed (apt-get install busybox-static)" >&2; exit 1; }
  if ldd "$BUSYBOX" >/dev/null 2>&1; then echo "docker: $BUSYBOX is not static (install busybox-static)" >&2; exit 1; fi
  STAGE="$(mktemp -d)"
  trap 'rm -rf "$STAGE"' EXIT
  mkdir -p "$STAGE"/{bin,etc,tmp,www,proc,sys,dev}
  cp "$BUSYBOX" "$STAGE/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$STAGE/bin/$applet"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$STAGE/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$STAGE/etc/group"
  echo "gantry test image" >"$STAGE/www/index.html"
  chmod 1777 "$STAGE/tmp"
  tar -C "$STAGE" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]' \
    --change 'EXPOSE 8080' \
    - "$IMAGE" >/dev/null
  echo "docker: $IMAGE ready"
fi
