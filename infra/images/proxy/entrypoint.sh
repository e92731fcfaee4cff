#!/bin/sh
# The proxy's start: a self-signed certificate for the demo when /etc/sde-tls holds none
# (a site mounts its own tls.crt and tls.key there instead), then nginx with the hosts
# and ports of this deployment filled into its configuration.
set -eu
hub_host=${SDE_HUB_HOST:-sde.localhost}
keycloak_host=${KEYCLOAK_HOST:-auth.localhost}
address=${SDE_PROXY_ADDRESS:-127.0.0.1}
port=${SDE_PROXY_PORT:-443}
hub_port=${SDE_HUB_PORT:-8000}
keycloak_port=${KEYCLOAK_HTTP_PORT:-8180}
tls=/etc/sde-tls

if [ ! -s "$tls/tls.crt" ] || [ ! -s "$tls/tls.key" ]; then
  echo "sde-proxy: no certificate in $tls; making a self-signed one for the demo"
  umask 077
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -sha256 \
    -subj "/CN=$hub_host" \
    -addext "subjectAltName=DNS:$hub_host,DNS:*.$hub_host,DNS:$keycloak_host" \
    -keyout "$tls/tls.key.new" -out "$tls/tls.crt.new" 2>/dev/null
  mv "$tls/tls.key.new" "$tls/tls.key"
  mv "$tls/tls.crt.new" "$tls/tls.crt"
  chmod 644 "$tls/tls.crt"
fi

sed -e "s|@HUB_HOST@|$hub_host|g" -e "s|@KEYCLOAK_HOST@|$keycloak_host|g" \
    -e "s|@ADDRESS@|$address|g" -e "s|@PORT@|$port|g" \
    -e "s|@HUB_PORT@|$hub_port|g" -e "s|@KEYCLOAK_PORT@|$keycloak_port|g" \
    /etc/sde-proxy/nginx.conf.in >/etc/nginx/conf.d/sde.conf
nginx -t -q
exec nginx -g 'daemon off;'
