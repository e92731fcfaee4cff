#!/bin/sh
# First start: create the cluster and the `sde` role and database (owner, not a
# superuser), with the password from SDE_DB_PASSWORD or the file SDE_DB_PASSWORD_FILE.
# Every start: Keycloak's role and database when KEYCLOAK_DB_PASSWORD is set, then
# PostgreSQL as `postgres`, password (SCRAM) sign-in only over TCP.
set -eu
if [ -n "${SDE_DB_PASSWORD_FILE:-}" ]; then
  SDE_DB_PASSWORD=$(cat "$SDE_DB_PASSWORD_FILE")
fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${SDE_DB_PASSWORD:-}" ]; then
    echo "sde-postgres: error: set SDE_DB_PASSWORD (or SDE_DB_PASSWORD_FILE) for the first start" >&2
    exit 2
  fi
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  as_postgres initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  # Single-user mode: the role and database exist before anything can connect.
  # It exits 0 even when a statement fails, so its log is checked.
  quoted=$(printf '%s' "$SDE_DB_PASSWORD" | sed "s/'/''/g")
  log=$(printf "CREATE ROLE sde LOGIN PASSWORD '%s'\nCREATE DATABASE sde OWNER sde\n" "$quoted" \
    | as_postgres postgres --single -D "$PGDATA" postgres 2>&1 >/dev/null)
  if printf '%s' "$log" | grep -q 'ERROR:'; then
    printf '%s\n' "$log" >&2
    rm -rf "${PGDATA:?}"/*
    echo "sde-postgres: error: could not create the sde role and database" >&2
    exit 1
  fi
  echo "sde-postgres: created database sde"
fi

# Keycloak's own role and database (owner, not a superuser), when the deployment runs
# Keycloak: made at any start, so an existing cluster gets them too, and the role's
# password follows KEYCLOAK_DB_PASSWORD. "already exists" is the only error allowed.
if [ -n "${KEYCLOAK_DB_PASSWORD_FILE:-}" ]; then
  KEYCLOAK_DB_PASSWORD=$(cat "$KEYCLOAK_DB_PASSWORD_FILE")
fi
if [ -n "${KEYCLOAK_DB_PASSWORD:-}" ]; then
  quoted=$(printf '%s' "$KEYCLOAK_DB_PASSWORD" | sed "s/'/''/g")
  log=$(printf "CREATE ROLE keycloak LOGIN\nALTER ROLE keycloak LOGIN PASSWORD '%s'\nCREATE DATABASE keycloak OWNER keycloak\n" "$quoted" \
    | as_postgres postgres --single -D "$PGDATA" postgres 2>&1 >/dev/null)
  if printf '%s' "$log" | grep 'ERROR:' | grep -vq 'already exists'; then
    printf '%s\n' "$log" >&2
    echo "sde-postgres: error: could not create the keycloak role and database" >&2
    exit 1
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
  postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
