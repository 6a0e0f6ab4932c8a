#!/usr/bin/env bash
# `make health` and `snapshot.sh --health-check` against a private PostgreSQL and the fake AppView:
# 0 when both answer; 5 with its message for a database that is stopped or not migrated; 6 for an
# API on a closed port. Also `make install` into a temporary prefix and the installed script's check.
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start health
build_dir=$(cd "$bin/.." && pwd)

# expect_exit NAME CODE PATTERN CMD...: CMD exits CODE ("nonzero" = anything but 0) and its stderr
# matches the extended regex PATTERN.
expect_exit() {
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

seed=3 users=24
start_cluster
start_fake fake --day 1 --seed $seed --users $users
api="http://127.0.0.1:$port_fake"
migrate
seed_users

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

expect_exit "make health: database and API up" 0 'health: database and API OK' run_make
expect_exit "snapshot.sh --health-check: both up" 0 'API health check ok' script
# The health actor is really asked about: the fake AppView counted a getProfiles call for it.
[ "$(curl -fsS "$api/_fake/stats" | jq '.requests.getProfiles')" -ge 2 ] && ok "the API was asked getProfiles" || bad "no getProfiles call reached the fake AppView"

# Migrations not current: a copy of the database with the newest migration unrecorded, and one
# never migrated at all.
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE behind TEMPLATE dopplersky" || die "create behind"
psql_q -d "$(base_url_of behind)" -c "DELETE FROM ds_schema_migrations WHERE version = (SELECT max(version) FROM ds_schema_migrations)"
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE empty" || die "create empty"
DATABASE_URL=$(base_url_of behind) expect_exit "make health: a migration pending" nonzero \
  'database health check failed: 1 migration\(s\) pending \(.*\); run ds-migrate' run_make
DATABASE_URL=$(base_url_of behind) expect_exit "snapshot.sh: a migration pending exits 5" 5 \
  'database health check failed: 1 migration\(s\) pending' script
DATABASE_URL=$(base_url_of empty) expect_exit "snapshot.sh: never migrated exits 5" 5 \
  'database health check failed: [0-9]+ migration\(s\) pending' script

# The API on a closed port: the database part passes, the API part fails with its own code.
BLUESKY_BASE_URL=http://127.0.0.1:$closed expect_exit "make health: API on a closed port" nonzero \
  "API health check failed: http://127.0.0.1:$closed/xrpc/app.bsky.actor.getProfiles" run_make
BLUESKY_BASE_URL=http://127.0.0.1:$closed expect_exit "snapshot.sh: API on a closed port exits 6" 6 \
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
  expect_exit "installed dopplersky-snapshot --health-check finds its programs" 0 'health: database and API OK' \
    env -u DS_BIN_DIR PATH=/usr/bin:/bin "$prefix/bin/dopplersky-snapshot" --health-check
else
  bad "make install failed:"; tail -5 "$work/install.log" >&2
fi

# PostgreSQL stopped: last, since nothing after it needs the database.
"$src/tests/scripts/pg-cluster.sh" stop "$work/pg"
expect_exit "make health: PostgreSQL stopped" nonzero 'database health check failed: .*(refused|connect)' run_make
expect_exit "snapshot.sh: PostgreSQL stopped exits 5" 5 'database health check failed' script

finish
