#!/usr/bin/env bash
# Build the Debian base image from Debian packages alone (no registry needed):
#   debootstrap --variant=minbase bookworm ROOT && tar -C ROOT -c . | docker import - NAME
# The mirror is the one this host's apt uses, so a site with its own mirror needs
# nothing extra. Usage: build-base.sh [IMAGE_NAME]
set -euo pipefail
name=${1:-sde-base:bookworm}
suite=bookworm

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
    | grep -v security | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' \
    | grep -v security | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || { echo "error: debootstrap is missing (make system)" >&2; exit 2; }
root=$(mktemp -d /var/tmp/sde-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite from $mirror"
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,tini \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# Make the image small and deterministic enough: no apt lists or caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "built $name"
