#!/usr/bin/env bash
# End to end on real PostgreSQL and the fake AppView over loopback: day 1 (backfill), day 2
# (incremental), every row checked by ds-e2e-check; a rerun of day 2 changes nothing; each file
# saved between two stages replays through the rest to the same database state.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start pipeline_e2e
seed=${E2E_SEED:-7} users=${E2E_USERS:-60}
# Each step builds on the one before, so a failed one ends the test (die); what passed is counted.

start_cluster
start_fake fake --day 1 --seed "$seed" --users "$users"
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0 LOG_LEVEL=${LOG_LEVEL:-warning}

step "migrate and register the dataset's users"
migrate
seed_users

step "day 1: full backfill"
DS_NOW=$(day_now 1) "$src/pipelines/snapshot.sh" --save-dir "$work/d1" || die "day 1 run exited $?"
e2e_check --db "$url" --days 1 --runs 1 && ok "day 1 database state" || die "day 1 database state"
[ "$(grep -c '"type":"post"' "$work/d1/3-feeds.ndjson")" -gt 10500 ] && ok "day 1 fetched more posts than one user's 10,600" \
  || die "day 1 fetched fewer posts than one user's 10,600"
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE after_day1 TEMPLATE dopplersky"

step "day 2: incremental"
fake_day "$port_fake" 2
DS_NOW=$(day_now 2) "$src/pipelines/snapshot.sh" --save-dir "$work/d2" || die "day 2 run exited $?"
e2e_check --db "$url" --days 1,2 --runs 2 && ok "day 2 database state" || die "day 2 database state"
dump_state "$url" >"$work/state-day2"
deleted=$(q "SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL")
[ "$deleted" -gt 0 ] && ok "day 2 marked $deleted posts deleted" || die "no post was marked deleted on day 2"

step "day 2 again: the database does not change"
DS_NOW=$(day_now 2) "$src/pipelines/snapshot.sh" || die "day 2 rerun exited $?"
dump_state "$url" >"$work/state-rerun"
diff -q "$work/state-day2" "$work/state-rerun" >/dev/null || { diff "$work/state-day2" "$work/state-rerun" | head -20 >&2; die "rerun changed the database"; }
e2e_check --db "$url" --days 1,2 --runs 3 && ok "the rerun changed nothing" || die "state after the rerun"

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
  ok "replay from $(basename "$file")"
done
finish
