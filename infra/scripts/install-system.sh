#!/usr/bin/env bash
# Install the Debian packages sde needs, only those that are missing.
# Run as root on Debian 12; a no-op when everything is present.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
want() { # want COMMAND PACKAGE
  have_cmd "$1" || need+=("$2")
}

want python3 python3
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
want git git
want make make
want dockerd docker.io
want docker-compose docker-compose
want iptables iptables
want ip iproute2
want nsenter util-linux
want debootstrap debootstrap
want chromium chromium
want curl curl
want node nodejs
want npm npm
# Keycloak for the tests (infra/keycloak/fetch.sh): a JRE to run it (Temurin, where
# installed, is preferred by sde.keycloak.server) and maven to fetch it from Maven Central.
want java openjdk-17-jre-headless
want mvn maven
# The airlock's malware scan of ingress files (sde.airlock.checks.malware talks to clamd);
# the tests start a private clamd with a signature file of their own.
want clamd clamav-daemon
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "error: missing system packages (${need[*]}); run as root or install them: apt-get install ${need[*]}" >&2
  exit 2
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
# Debian's postgresql package creates and starts a default cluster; sde runs its
# own clusters under SDE_HOME or the test directory, so the default one is not needed.
