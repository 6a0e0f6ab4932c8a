#!/usr/bin/env bash
# Starts or stops a private PostgreSQL cluster in a directory of ours, on 127.0.0.1 and a free port,
# for tests, the demo and `make snapshot`'s local default. As root, the server runs as `postgres`.
#
#   pg-cluster.sh start DIR   # initdb if needed, start, create database "dopplersky";
#                             # writes DIR/env (DATABASE_URL=..., PGPORT=...) and prints the URL
#   pg-cluster.sh stop DIR    # fast shutdown (no-op when not running)
#   pg-cluster.sh status DIR  # exit 0 when running
#
# PG_CLUSTER_SETTINGS: the server's settings (`-c name=value ...`) at start. The default, for test
# and demo data, trades durability for speed; bench/load/run.sh passes production-like ones.
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/pg_ctl" ] || { echo "pg-cluster: PostgreSQL server binaries not found (apt-get install postgresql; or: make deps)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Below Linux's ephemeral range (32768 and up by default): a port some client connection holds
# there answers no connect probe, yet the server cannot bind it (it failed a test run so).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "pg-cluster: no free port found" >&2; return 1
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" = 0 ]; then
      chown postgres:postgres "$dir"; chmod 755 "$dir"
      runuser -u postgres -- test -x "$dir" || {
        echo "pg-cluster: the postgres user cannot reach $dir; make its parent directories traversable (chmod o+x)" >&2; exit 1; }
    fi
    if [ -f "$dir/env" ] && as_owner "$pgbin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      . "$dir/env"; echo "$DATABASE_URL"; exit 0
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$pgbin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # fsync off by default: these clusters hold test and demo data, and speed matters more there.
    # A port taken between the probe and the bind gets another try.
    settings=${PG_CLUSTER_SETTINGS:--c fsync=off -c synchronous_commit=off -c full_page_writes=off}
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      seen=0; [ -f "$dir/server.log" ] && seen=$(wc -l <"$dir/server.log")
      if as_owner "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir $settings" \
        start >/dev/null 2>"$dir/pg_ctl.err"; then
        break
      fi
      if [ "$attempt" = 5 ] || ! tail -n +"$((seen + 1))" "$dir/server.log" | grep -q "could not create any TCP/IP sockets"; then
        cat "$dir/pg_ctl.err" >&2; tail -20 "$dir/server.log" >&2; exit 1
      fi
    done
    as_owner "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAtc \
      "SELECT 1 FROM pg_database WHERE datname='dopplersky'" | grep -q 1 \
      || as_owner "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres dopplersky
    url="postgresql://postgres@127.0.0.1:$port/dopplersky"
    printf 'DATABASE_URL=%s\nPGPORT=%s\nPGHOST=127.0.0.1\nPGUSER=postgres\nPG_BIN=%s\n' "$url" "$port" "$pgbin" > "$dir/env.tmp"
    mv "$dir/env.tmp" "$dir/env"
    echo "$url"
    ;;
  stop)
    [ -d "$dir/data" ] || exit 0
    as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  status)
    as_owner "$pgbin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
    ;;
  *) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
esac
