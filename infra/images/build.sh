#!/usr/bin/env bash
# Build the platform images of docker-compose.yml: sde-platform (the `sde` command,
# JupyterHub and its proxy), sde-postgres (the state database), sde-keycloak (the
# identity provider, from the zip infra/keycloak/fetch.sh caches) and sde-proxy (the TLS
# reverse proxy, nginx), on the same base and with the same CA handling as the
# workspace image (infra/scripts/build-image.sh).
#
#   BASE_IMAGE=registry.example/debian:bookworm infra/images/build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
platform_image=${PLATFORM_IMAGE:-sde-platform:latest}
postgres_image=${POSTGRES_IMAGE:-sde-postgres:latest}
keycloak_image=${KEYCLOAK_IMAGE:-sde-keycloak:latest}
proxy_image=${PROXY_IMAGE:-sde-proxy:latest}

ctx=$(mktemp -d /var/tmp/sde-image-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT

mkdir -p "$ctx/platform/src"
cp "$here/platform/Dockerfile" "$here/platform/share-pool-dir.sh" "$ctx/platform/"
(cd "$repo" && cp -r README.md pyproject.toml setup.py platform accreditation airlock "$ctx/platform/src/")
mkdir -p "$ctx/platform/src/workspace-images"
cp -r "$repo/workspace-images/sde" "$ctx/platform/src/workspace-images/"
find "$ctx/platform/src" \( -name '*.egg-info' -o -name build \) -prune -exec rm -rf {} +
bash "$repo/infra/scripts/build-image.sh" "$platform_image" "$ctx/platform" Dockerfile

mkdir -p "$ctx/postgres/postgres"
cp "$here/postgres/Dockerfile" "$ctx/postgres/"
cp "$here/postgres/entrypoint.sh" "$ctx/postgres/postgres/"
bash "$repo/infra/scripts/build-image.sh" "$postgres_image" "$ctx/postgres" Dockerfile

mkdir -p "$ctx/keycloak"
cp "$here/keycloak/Dockerfile" "$ctx/keycloak/"
cp "$(bash "$repo/infra/keycloak/fetch.sh")" "$ctx/keycloak/keycloak.zip"
bash "$repo/infra/scripts/build-image.sh" "$keycloak_image" "$ctx/keycloak" Dockerfile

mkdir -p "$ctx/proxy/proxy"
cp "$here/proxy/Dockerfile" "$ctx/proxy/"
cp "$here/proxy/entrypoint.sh" "$here/proxy/nginx.conf.in" "$ctx/proxy/proxy/"
bash "$repo/infra/scripts/build-image.sh" "$proxy_image" "$ctx/proxy" Dockerfile
