#!/usr/bin/env bash
# End to end on real PostgreSQL and the fake AppView over loopback: day 1 (backfill), day 2
# (incremental), every row checked by ds-e2e-check; a rerun of day 2 changes nothing; each file
# saved between two stages replays through the rest to the same database state.
set -euo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
seed=${E2E_SEED:-7} users=${E2E_USERS:-60}
work=$(mktemp -d /tmp/ds-e2e.XXXXXX)
chmod 755 "$work"  # the server runs as postgres under root and must reach its data directory
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
  "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" || true
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
test_name=pipeline_e2e
. "$src/tests/scripts/e2e-lib.sh"
step() { echo "== $*" >&2; }
die() { echo "FAIL: $*" >&2; exit 1; }

url=$("$src/tests/scripts/pg-cluster.sh" start "$work/pg")
. "$work/pg/env"
base_url_of() { echo "${url%/*}/$1"; }

"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --day 1 --seed "$seed" --users "$users" 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { cat "$work/fake.log" >&2; die "fake AppView did not start"; }
port=$(cat "$work/port")
export BLUESKY_BASE_URL="http://127.0.0.1:$port" DATABASE_URL="$url" RATE_LIMIT_RPS=0 LOG_LEVEL=${LOG_LEVEL:-warning}
day_now() { date -u -d "2026-11-01 06:00:00 UTC + $1 day" +%Y-%m-%dT%H:%M:%SZ; }
check() { "$bin/ds-e2e-check" --db "$DATABASE_URL" --seed "$seed" --users "$users" "$@"; }

step "migrate and register the dataset's users"
"$bin/ds-migrate" >/dev/null 2>"$work/migrate.log" || { cat "$work/migrate.log" >&2; die "ds-migrate"; }
"$bin/ds-fake-appview" --day 1 --seed "$seed" --users "$users" seed-sql | psql_q -d "$url"
psql_q -d "$url" -c "CREATE TABLE e2e_seed_users AS SELECT * FROM users"

step "day 1: full backfill"
DS_NOW=$(day_now 1) "$src/pipelines/snapshot.sh" --save-dir "$work/d1" || die "day 1 run exited $?"
check --days 1 --runs 1 || die "day 1 database state"
[ "$(grep -c '"type":"post"' "$work/d1/3-feeds.ndjson")" -gt 10500 ] || die "day 1 fetched fewer posts than one user's 10,600"
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE after_day1 TEMPLATE dopplersky"

step "day 2: incremental"
curl -fsS -X POST "http://127.0.0.1:$port/_fake/day?day=2" >/dev/null
DS_NOW=$(day_now 2) "$src/pipelines/snapshot.sh" --save-dir "$work/d2" || die "day 2 run exited $?"
check --days 1,2 --runs 2 || die "day 2 database state"
dump_state "$url" >"$work/state-day2"
deleted=$(psql_q -d "$url" -c "SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL")
[ "$deleted" -gt 0 ] || die "no post was marked deleted on day 2"

step "day 2 again: the database does not change"
DS_NOW=$(day_now 2) "$src/pipelines/snapshot.sh" || die "day 2 rerun exited $?"
dump_state "$url" >"$work/state-rerun"
diff -q "$work/state-day2" "$work/state-rerun" >/dev/null || { diff "$work/state-day2" "$work/state-rerun" | head -20 >&2; die "rerun changed the database"; }
check --days 1,2 --runs 3 || die "state after the rerun"

step "replays of saved stage outputs reach the same state"
stages=(ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load)
for k in 1 2 3 4; do
  file=$(ls "$work/d2/$k-"*.ndjson)
  db="replay_$k"
  psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE $db TEMPLATE after_day1"
  cmd="cat '$file'"
  for ((i = k - 1; i < 4; i++)); do cmd+=" | '$bin/${stages[$i]}'"; done
  DATABASE_URL=$(base_url_of "$db") DS_NOW=$(day_now 2) bash -o pipefail -c "$cmd >/dev/null" || die "replay from $(basename "$file") exited $?"
  dump_state "$(base_url_of "$db")" >"$work/state-replay-$k"
  diff -q "$work/state-day2" "$work/state-replay-$k" >/dev/null \
    || { diff "$work/state-day2" "$work/state-replay-$k" | head -20 >&2; die "replay from $(basename "$file") differs"; }
  echo "ok   replay from $(basename "$file")" >&2
done
echo "e2e: all checks passed" >&2
