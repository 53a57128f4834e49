#!/usr/bin/env bash
# Runs a command with BOSH_RS_TEST_POSTGRES_URL pointing at a throwaway PostgreSQL cluster on
# loopback, so the director's tests run against PostgreSQL as well as SQLite. An already set
# BOSH_RS_TEST_POSTGRES_URL is used as is. The cluster lives in a temp dir and is removed after.
set -euo pipefail

if [ -n "${BOSH_RS_TEST_POSTGRES_URL:-}" ]; then
  exec "$@"
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "with-postgres: PostgreSQL server binaries are missing (scripts/install-deps.sh installs them);" \
       "PostgreSQL tests will be SKIPPED" >&2
  exec "$@"
fi

# PostgreSQL refuses to run as root: run it as the `postgres` user the package creates.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

data=$(mktemp -d "${TMPDIR:-/tmp}/bosh-rs-pg.XXXXXX")
[ "$(id -u)" -eq 0 ] && chown postgres: "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  as_pg "$bindir/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT

as_pg "$bindir/initdb" -D "$data/db" -A trust -U postgres --no-sync >/dev/null
as_pg "$bindir/pg_ctl" -D "$data/db" -l "$data/log" -w \
  -o "-h 127.0.0.1 -p $port -k $data -c fsync=off -c max_connections=200" start >/dev/null

export BOSH_RS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL on 127.0.0.1:$port for this run"
"$@"
