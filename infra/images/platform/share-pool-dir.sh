#!/bin/sh
# Make the warm pool's directory (default /run/sde) a shared mount in the Docker
# engine's mount namespace, so that the hub container can bind it with rshared
# propagation and the mounts the pool makes there reach the engine (docker-compose.yml,
# service pool-dir). Needs `pid: host` and CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_CHROOT.
set -eu
dir=${1:-/run/sde}
pid=
for p in /proc/[0-9]*; do
  if [ "$(cat "$p/comm" 2>/dev/null)" = dockerd ]; then
    pid=${p#/proc/}
    break
  fi
done
if [ -z "$pid" ]; then
  echo "sde-share-pool-dir: error: no dockerd process is visible (the service needs pid: host)" >&2
  exit 2
fi
nsenter --target "$pid" --mount -- sh -c '
  set -eu
  mkdir -p "$1"
  mountpoint -q "$1" || mount --bind "$1" "$1"
  mount --make-rshared "$1"
' sh "$dir"
echo "sde-share-pool-dir: $dir is a shared mount for dockerd (pid $pid)"
