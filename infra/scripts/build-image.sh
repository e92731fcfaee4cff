#!/usr/bin/env bash
# Build one sde image from a prepared build context, the one way every sde image is built:
#
#   build-image.sh IMAGE CONTEXT DOCKERFILE     (DOCKERFILE relative to CONTEXT)
#
# The base is BASE_IMAGE, or sde-base:bookworm built from Debian packages with
# debootstrap when it is not there yet (air-gapped sites need only a Debian mirror and
# a PyPI mirror). The host's CA bundle (CA_BUNDLE) goes into the context so pip, npm
# and apt work behind a TLS-inspecting proxy. The image is labelled with a digest of
# its inputs and not rebuilt while they are unchanged.
set -euo pipefail
image=$1 ctx=$2 dockerfile=$3
repo=$(cd "$(dirname "$0")/../.." && pwd)
base=${BASE_IMAGE:-sde-base:bookworm}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

bash "$repo/infra/scripts/ensure-docker.sh"
if [ -z "${BASE_IMAGE:-}" ] && ! docker image inspect "$base" >/dev/null 2>&1; then
  bash "$repo/workspace-images/base/build-base.sh" "$base"
fi
[ -f "$ca" ] || { echo "error: CA bundle $ca not found (set CA_BUNDLE)" >&2; exit 2; }
cp "$ca" "$ctx/ca-certificates.crt"
find "$ctx" -name __pycache__ -prune -exec rm -rf {} +

digest=$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$base") \
  | sha256sum | cut -c1-16)
current=$(docker image inspect -f '{{ index .Config.Labels "org.sde.inputs" }}' "$image" 2>/dev/null || true)
if [ "$current" = "$digest" ]; then
  echo "$image is up to date ($digest)"
  exit 0
fi
echo "building $image from $base"
docker build -q --network host --build-arg "BASE_IMAGE=$base" --label "org.sde.inputs=$digest" \
  -f "$ctx/$dockerfile" -t "$image" "$ctx" >/dev/null
echo "built $image ($digest)"
