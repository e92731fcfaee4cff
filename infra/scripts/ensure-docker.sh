#!/usr/bin/env bash
# Make a Docker engine available: install docker.io when dockerd is missing, start
# dockerd in the background when it is not answering, wait until it does.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "error: Docker is not installed; run as root or install docker.io" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io iptables >/dev/null
fi
[ "$(id -u)" = 0 ] || { echo "error: dockerd is not running and only root can start it" >&2; exit 2; }
log=${DOCKERD_LOG:-/var/log/sde-dockerd.log}
# Detached from this shell so it outlives the make or test run that started it.
setsid nohup dockerd >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "error: dockerd did not start within 30 s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
