#!/usr/bin/env bash
# A private PostgreSQL server for the tests (Debian's `postgresql` package, installed by
# scripts/setup.sh): `initdb` into a fresh temporary folder, as the unprivileged `postgres` user
# when run as root, listening only on 127.0.0.1 at a free port and on a socket inside that folder.
#
#   eval "$(scripts/postgres.sh start)"   # exports STARLING_TEST_POSTGRES and STARLING_TEST_PGDATA
#   scripts/postgres.sh stop "$STARLING_TEST_PGDATA"
#
# STARLING_TEST_POSTGRES is a server URL without a database (postgres://starling@127.0.0.1:PORT);
# each test creates its own database there. The server trusts loopback connections and runs
# with fsync off: it lives for one test run, and the tests kill relays, never the machine.
# STARLING_PG_DURABLE=1 keeps fsync and synchronous commit on (for benchmarks beside SQLite, which
# the relay runs with synchronous=FULL).
set -euo pipefail

bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$newest" ] || { echo "postgres.sh: PostgreSQL is not installed (run scripts/setup.sh)" >&2; exit 1; }
  echo "$newest"
}

# Runs a server program as an unprivileged user (PostgreSQL refuses to run as root), from /tmp:
# that user may not be allowed into the folder this script was started from.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd /tmp && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

case "${1:-}" in
  start)
    bin=$(bindir)
    dir=$(mktemp -d -t starling-pg.XXXXXX)
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U starling -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${STARLING_PG_DURABLE:-0}" = 1 ] && durability=""
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 $durability" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "export STARLING_TEST_POSTGRES=postgres://starling@127.0.0.1:$port"
    echo "export STARLING_TEST_PGDATA=$dir"
    ;;
  stop)
    dir=${2:?usage: postgres.sh stop DIR}
    [ -d "$dir/data" ] || exit 0
    as_owner "$(bindir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres.sh start | stop DIR" >&2
    exit 2
    ;;
esac
