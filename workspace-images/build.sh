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

ctx=$(mktemp -d /var/tmp/sde-image-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
cp "$here/pyproject.toml" "$ctx/"
cp -r "$here/workspace" "$ctx/workspace"
cp -r "$repo/platform/sde/hub/jupyter-config" "$ctx/jupyter-config"
mkdir "$ctx/sde"
for pkg in "$here"/sde/*/; do
  cp -r "$pkg" "$ctx/sde/"
done
bash "$repo/infra/scripts/build-image.sh" "$image" "$ctx" workspace/Dockerfile
