#!/usr/bin/env bash
# Fetch Keycloak (the keycloak-quarkus-dist zip from Maven Central) into a cache outside
# the clone, once per machine, and print the path of the zip:
#
#   infra/keycloak/fetch.sh            # -> $SDE_KEYCLOAK_CACHE/keycloak-quarkus-dist-VERSION.zip
#
# Test sessions (tests/support/keycloak.py) unpack and build from it; the image build
# (infra/images/build.sh) copies it into the keycloak image's context. Parallel runs
# share one download: the fetch holds an flock on the cache, and the zip appears under
# its final name only once it is complete, so a killed download leaves nothing usable.
set -euo pipefail
version=${SDE_KEYCLOAK_VERSION:-26.7.3}
# Root shares one cache per machine; anyone else keeps their own.
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/sde; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/sde; fi
cache=${SDE_KEYCLOAK_CACHE:-$default_cache/keycloak-$version}
zip="$cache/keycloak-quarkus-dist-$version.zip"

if [ -s "$zip" ]; then
  echo "$zip"
  exit 0
fi
command -v mvn >/dev/null 2>&1 || {
  echo "error: mvn not found (Debian package maven; make system installs it)" >&2
  exit 2
}
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -s "$zip" ]; then
  part=$(mktemp -d "$cache/.download.XXXXXX")
  trap 'rm -rf "$part"' EXIT
  echo "fetching org.keycloak:keycloak-quarkus-dist:$version:zip from Maven Central" >&2
  # Maven's own cache goes with ours, not in the home directory of whoever runs this.
  mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$cache/.m2" dependency:copy \
    "-Dartifact=org.keycloak:keycloak-quarkus-dist:$version:zip" \
    "-DoutputDirectory=$part" >&2
  mv "$part/keycloak-quarkus-dist-$version.zip" "$zip"
  # The zip is all that is kept; Maven's copy of it would double the cache.
  rm -rf "$cache/.m2/org/keycloak/keycloak-quarkus-dist"
fi
echo "$zip"
