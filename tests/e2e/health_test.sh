#!/usr/bin/env bash
# `make health` and `snapshot.sh --health-check` against a private PostgreSQL and the fake AppView:
# 0 when both answer; 5 with its message for a database that is stopped or not migrated; 6 for an
# API on a closed port. Also `make install` into a temporary prefix and the installed script's check.
set -uo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build_dir=$(cd "$bin/.." && pwd)
work=$(mktemp -d /tmp/ds-health.XXXXXX)
chmod 755 "$work"  # the server runs as postgres under root and must reach its data directory
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
  "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*" >&2; }
bad() { failed=$((failed + 1)); echo "FAIL $*" >&2; }
die() { echo "FAIL: $*" >&2; echo "health: $passed passed, $((failed + 1)) failed"; exit 1; }

# expect NAME CODE PATTERN CMD...: CMD exits CODE ("nonzero" = anything but 0) and its stderr
# matches the extended regex PATTERN.
expect() {
  local name=$1 want=$2 pattern=$3; shift 3
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  local code_ok=0
  if [ "$want" = nonzero ]; then [ $rc != 0 ] && code_ok=1; else [ $rc = "$want" ] && code_ok=1; fi
  if [ $code_ok = 1 ] && grep -Eq -- "$pattern" "$work/err"; then
    ok "$name (exit $rc)"
  else
    bad "$name: exit $rc (want $want), stderr:"; sed 's/^/     /' "$work/err" | tail -8 >&2
  fi
}

url=$("$src/tests/scripts/pg-cluster.sh" start "$work/pg") || die "cannot start PostgreSQL"
. "$work/pg/env"
psql_q() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt "$@"; }
server=${url%/*}

"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --day 1 --seed 3 --users 24 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || die "fake AppView did not start: $(cat "$work/fake.log")"
api="http://127.0.0.1:$(cat "$work/port")"
"$bin/ds-migrate" --db "$url" >/dev/null 2>"$work/migrate.log" || die "ds-migrate: $(cat "$work/migrate.log")"
"$bin/ds-fake-appview" --day 1 --seed 3 --users 24 seed-sql | psql_q -d "$url" || die "seeding"

# A port nothing listens on: one we just checked is closed.
closed=""
for p in $(seq 20 60); do
  port=$(( 40000 + RANDOM % 20000 ))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then closed=$port; break; fi
done
[ -n "$closed" ] || die "no closed port found"

# The settings of every check: this cluster and API, an account the fake dataset has, and this
# build's programs (DS_BIN_DIR is also what `make health BUILD=...` passes to the script).
export DATABASE_URL=$url BLUESKY_BASE_URL=$api HEALTH_ACTOR=user0001.fake.test LOG_LEVEL=info DB_CONNECT_TIMEOUT=3
run_make() { make --no-print-directory -C "$src" health BUILD="$build_dir"; }
script() { "$src/pipelines/snapshot.sh" --health-check; }

expect "make health: database and API up" 0 'health: database and API OK' run_make
expect "snapshot.sh --health-check: both up" 0 'API health check ok' script
# The health actor is really asked about: the fake AppView counted a getProfiles call for it.
[ "$(curl -fsS "$api/_fake/stats" | jq '.requests.getProfiles')" -ge 2 ] && ok "the API was asked getProfiles" || bad "no getProfiles call reached the fake AppView"

# Migrations not current: a copy of the database with the newest migration unrecorded, and one
# never migrated at all.
psql_q -d "$server/postgres" -c "CREATE DATABASE behind TEMPLATE dopplersky" || die "create behind"
psql_q -d "$server/behind" -c "DELETE FROM ds_schema_migrations WHERE version = (SELECT max(version) FROM ds_schema_migrations)"
psql_q -d "$server/postgres" -c "CREATE DATABASE empty" || die "create empty"
DATABASE_URL=$server/behind expect "make health: a migration pending" nonzero \
  'database health check failed: 1 migration\(s\) pending \(.*\); run ds-migrate' run_make
DATABASE_URL=$server/behind expect "snapshot.sh: a migration pending exits 5" 5 \
  'database health check failed: 1 migration\(s\) pending' script
DATABASE_URL=$server/empty expect "snapshot.sh: never migrated exits 5" 5 \
  'database health check failed: [0-9]+ migration\(s\) pending' script

# The API on a closed port: the database part passes, the API part fails with its own code.
BLUESKY_BASE_URL=http://127.0.0.1:$closed expect "make health: API on a closed port" nonzero \
  "API health check failed: http://127.0.0.1:$closed/xrpc/app.bsky.actor.getProfiles" run_make
BLUESKY_BASE_URL=http://127.0.0.1:$closed expect "snapshot.sh: API on a closed port exits 6" 6 \
  'API health check failed: .*(connect|refused)' script

# make install, then the installed script with no DS_BIN_DIR and a PATH without the programs:
# it must find them beside itself.
prefix=$work/prefix
if make --no-print-directory -C "$src" install BUILD="$build_dir" PREFIX="$prefix" >"$work/install.log" 2>&1; then
  missing=""
  for f in bin/ds-select-users bin/ds-fetch-profiles bin/ds-fetch-feeds bin/ds-aggregate bin/ds-load bin/ds-migrate \
           bin/dopplersky-snapshot bin/dopplersky-snapshot-sharded share/dopplersky/sql/001_original_schema.sql \
           share/doc/dopplersky/operations.md; do
    [ -e "$prefix/$f" ] || missing+=" $f"
  done
  [ -z "$missing" ] && ok "make install PREFIX=... installed every file" || bad "make install left out:$missing"
  [ "$(ls "$prefix/share/dopplersky/sql" | wc -l)" = "$(ls "$src"/sql/*.sql | wc -l)" ] && ok "every migration installed" || bad "sql/ not installed whole"
  expect "installed dopplersky-snapshot --health-check finds its programs" 0 'health: database and API OK' \
    env -u DS_BIN_DIR PATH=/usr/bin:/bin "$prefix/bin/dopplersky-snapshot" --health-check
else
  bad "make install failed:"; tail -5 "$work/install.log" >&2
fi

# PostgreSQL stopped: last, since nothing after it needs the database.
"$src/tests/scripts/pg-cluster.sh" stop "$work/pg"
expect "make health: PostgreSQL stopped" nonzero 'database health check failed: .*(refused|connect)' run_make
expect "snapshot.sh: PostgreSQL stopped exits 5" 5 'database health check failed' script

echo "health: $passed passed, $failed failed"
[ "$failed" = 0 ]
