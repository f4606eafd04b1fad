#!/usr/bin/env bash
# Runs a command beside a private, throwaway PostgreSQL cluster: trust auth, loopback only, a
# free port, fsync off. Tests get its admin URL in GRIDWATCH_TEST_PG_ADMIN_URL, so they never
# depend on how (or whether) the machine's own PostgreSQL is configured.
set -euo pipefail

bindir=$(compgen -G "/usr/lib/postgresql/*/bin" | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }
workdir=$(mktemp -d /tmp/gridwatch-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

as_postgres=()
if [ "$(id -u)" -eq 0 ]; then
  # initdb refuses to run as root.
  chown postgres:postgres "$workdir"
  as_postgres=(runuser -u postgres --)
fi

stop() {
  "${as_postgres[@]}" "$bindir/pg_ctl" -D "$workdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap stop EXIT

"${as_postgres[@]}" "$bindir/initdb" -D "$workdir/data" -A trust -U postgres --no-sync >/dev/null
"${as_postgres[@]}" "$bindir/pg_ctl" -D "$workdir/data" -l "$workdir/postgres.log" -w \
  -o "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
  start >/dev/null

export GRIDWATCH_TEST_PG_ADMIN_URL="postgresql://postgres@127.0.0.1:$port/postgres"
echo "PostgreSQL for tests: $GRIDWATCH_TEST_PG_ADMIN_URL"
"$@"
