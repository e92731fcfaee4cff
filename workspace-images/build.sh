#!/usr/bin/env bash
# Build the researcher workspace image (default sde-workspace:latest).
#
#   BASE_IMAGE=registry.example/debian:bookworm workspace-images/build.sh
#
# Without BASE_IMAGE the base is sde-base:bookworm, built from Debian packages with
# debootstrap when it is not there yet (air-gapped sites need only a Debian mirror
# and a PyPI mirror). The host's CA bundle goes into the build so pip works behind
# a TLS-inspecting proxy. Rebuilds only when the inputs changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
image=${IMAGE:-sde-workspace:latest}
base=${BASE_IMAGE:-sde-base:bookworm}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

bash "$repo/infra/scripts/ensure-docker.sh"

if [ -z "${BASE_IMAGE:-}" ] && ! docker image inspect "$base" >/dev/null 2>&1; then
  bash "$here/base/build-base.sh" "$base"
fi
[ -f "$ca" ] || { echo "error: CA bundle $ca not found (set CA_BUNDLE)" >&2; exit 2; }

ctx=$(mktemp -d /var/tmp/sde-image-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp "$ca" "$ctx/ca-certificates.crt"
cp "$here/pyproject.toml" "$ctx/"
cp -r "$here/workspace" "$ctx/workspace"
cp -r "$repo/platform/sde/hub/jupyter-config" "$ctx/jupyter-config"
mkdir "$ctx/sde"
for pkg in "$here"/sde/*/; do
  cp -r "$pkg" "$ctx/sde/"
done
find "$ctx" -name __pycache__ -prune -exec rm -rf {} +

# The inputs' digest labels the image, so an unchanged tree is not rebuilt.
digest=$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "$base") \
  | sha256sum | cut -c1-16)
current=$(docker image inspect -f '{{ index .Config.Labels "org.sde.inputs" }}' "$image" 2>/dev/null || true)
if [ "$current" = "$digest" ]; then
  echo "$image is up to date ($digest)"
  exit 0
fi
echo "building $image from $base"
docker build -q --network host --build-arg "BASE_IMAGE=$base" --label "org.sde.inputs=$digest" \
  -f "$ctx/workspace/Dockerfile" -t "$image" "$ctx" >/dev/null
echo "built $image ($digest)"
