#!/usr/bin/env bash
# The request economy over a simulated week (docs/request-economy.md): the same fake AppView days
# run through three databases, always-feed (FEED_ECONOMY=off), economical, and economical against
# a fake that injects 429s, 5xx and truncated bodies. Every day the economical databases must equal
# the always-feed one, except the documented "+1 -1 older" account until its full refresh.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start economy_week
seed=${E2E_SEED:-11} users=${E2E_USERS:-60}
dataset=(--seed "$seed" --users "$users" --posts-scale 0.05 --economy-cases)
refresh_days=3  # FULL_REFRESH_DAYS: short, so that the documented case is repaired inside the week

start_cluster
start_fake clean --day 1 "${dataset[@]}"
start_fake faulty --day 1 "${dataset[@]}" --fault-seed 5 --p-429 0.04 --p-5xx 0.04 --p-truncated 0.04 --retry-after-s 0
export RATE_LIMIT_RPS=0 LOG_LEVEL=${LOG_LEVEL:-warning} FULL_REFRESH_DAYS=$refresh_days HTTP_MAX_ATTEMPTS=12

step "three databases with the dataset's users"
for db in always eco faulty; do
  psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE $db" || die "create $db"
  migrate --db "$(base_url_of "$db")"
  "$bin/ds-fake-appview" --day 1 "${dataset[@]}" seed-sql | psql_q -d "$(base_url_of "$db")" || die "seeding $db"
done

# The account of the "+1 -1 older" case: its only allowed difference (DID from the dataset).
# The accounts of the two "+1 -1" cases (tools/fake-appview/dataset.hpp, ds::fake::economy).
did_of() { "$bin/ds-fake-appview" user-records --day 1 "${dataset[@]}" | jq -r --arg h "$1" 'select(.handle == $h) | .did'; }
older_did=$(did_of user0024.fake.test) older_day=4
inside_did=$(did_of user0023.fake.test) inside_day=3
deletion_did=$(did_of user0027.fake.test) deletion_day=5  # postsCount drops by the window post it deletes
[ -n "$older_did" ] && [ -n "$inside_did" ] || die "the fake names no economy cases"

# run DAY DB PORT [ENV...]: one pipeline run of DAY into DB against the fake on PORT, stages saved.
run() {
  local day=$1 db=$2 port=$3; shift 3
  env "$@" DS_NOW="$(day_now "$day")" DATABASE_URL="$(base_url_of "$db")" BLUESKY_BASE_URL="http://127.0.0.1:$port" \
    "$src/pipelines/snapshot.sh" --save-dir "$work/$db-d$day" 2>"$work/$db-d$day.log" \
    || { tail -5 "$work/$db-d$day.log" >&2; die "day $day into $db exited $?"; }
}
# path_of DB DAY DID: the feed path ds-fetch-feeds took for DID.
path_of() { jq -r --arg d "$3" 'select(.type == "user" and .did == $d) | .feed.path' "$work/$1-d$2/3-feeds.ndjson"; }
# differs_only_in DID FILE: every line of the diff FILE names DID.
differs_only_in() { ! grep -E '^[<>]' "$2" | grep -qvF "$1"; }
# only_past_snapshots DID DATE FILE: every differing row is a snapshot of DID dated before DATE
# (a repaired account keeps the snapshots of the days it missed a post; the documented case).
only_past_snapshots() { ! grep -E '^[<>]' "$3" | awk -F'|' -v d="$1" -v t="$2" '!($1 ~ /^[<>] s$/ && $2 == d && $3 < t)' | grep -q .; }
repaired_on=""

open_since=""  # the day the documented case opened a difference, until the refresh closes it
requests_always=0 requests_eco=0
for day in 1 2 3 4 5 6 7; do
  step "day $day"
  fake_day "$port_clean" "$day"
  fake_day "$port_faulty" "$day"
  run "$day" always "$port_clean" FEED_ECONOMY=off
  run "$day" eco "$port_clean"
  run "$day" faulty "$port_faulty"
  dump_state "$(base_url_of always)" >"$work/always-$day.state"
  requests_always=$((requests_always + $(jq -s 'map(select(.type == "end") | .counters.requests // 0) | add' "$work/always-d$day/3-feeds.ndjson")))
  requests_eco=$((requests_eco + $(jq -s 'map(select(.type == "end") | .counters.requests // 0) | add' "$work/eco-d$day/3-feeds.ndjson")))

  older_path=$(path_of eco "$day" "$older_did")
  [ "$day" = "$older_day" ] && [ "$older_path" = posts ] && open_since=$day
  for db in eco faulty; do
    dump_state "$(base_url_of "$db")" >"$work/$db-$day.state"
    if diff "$work/always-$day.state" "$work/$db-$day.state" >"$work/$db-$day.diff"; then
      ok "day $day: $db equals always-feed"
    elif [ -n "$repaired_on" ] && only_past_snapshots "$older_did" "$(day_now "$day" | cut -c1-10)" "$work/$db-$day.diff"; then
      ok "day $day: $db differs from always-feed only in the snapshots the +1 -1 older account took before its repair"
    elif [ -n "$open_since" ] && differs_only_in "$older_did" "$work/$db-$day.diff"; then
      ok "day $day: $db differs from always-feed only in the documented +1 -1 older account"
    else
      head -20 "$work/$db-$day.diff" >&2
      bad "day $day: $db differs from always-feed"
    fi
  done
  # The documented case closes on the account's full-refresh day, within FULL_REFRESH_DAYS.
  if [ -n "$open_since" ] && [ "$day" -gt "$open_since" ] && [ "$older_path" = feed ]; then
    check "day $day: the full refresh took the +1 -1 older account's feed and repaired its posts and today's snapshot" \
      only_past_snapshots "$older_did" "$(day_now "$day" | cut -c1-10)" "$work/eco-$day.diff"
    open_since="" repaired_on=$day
  fi
done

step "what the week proves"
[ -n "$(path_of eco "$older_day" "$older_did")" ] || bad "the +1 -1 older account was not selected on day $older_day"
expect "the +1 -1 older difference was repaired within $refresh_days days" "${open_since:-closed}" closed
expect "day $inside_day: the +1 -1 inside account went back to its feed" "$(path_of eco "$inside_day" "$inside_did")" feed
expect_grep '"reason_post_missing":[1-9]' "$work/eco-d$inside_day/3-feeds.ndjson" "day $inside_day: a post missing from getPosts was counted"
# Its deletion was found by getPosts alone; the daily comparison above shows it marked as always-feed marks it.
expect "day $deletion_day: the deleting account stayed on getPosts" "$(path_of eco "$deletion_day" "$deletion_did")" posts
expect_grep '"reason_posts_dropped":[1-9]' "$work/eco-d$deletion_day/3-feeds.ndjson" "day $deletion_day: a drop explained by getPosts was counted"
# Its feeds of days 2-4 (a new post each day) were its own: the last restarted its refresh clock,
# so on day 5 its full refresh was not due (FULL_REFRESH_DAYS 3) whatever its hash day.
clock_of() { jq -r --arg d "$3" 'select(.type == "user" and .did == $d) | .refreshClock // "none"' "$work/$1-d$2/3-feeds.ndjson"; }
expect "day $deletion_day: the deleting account's refresh clock is its day-4 feed" \
  "$(clock_of eco "$deletion_day" "$deletion_did")" "$(day_now 4 | cut -c1-10)"
expect "always-feed starts no refresh clock" "$(clock_of always "$deletion_day" "$deletion_did")" none
posts_days=$(for d in 2 3 4 5 6 7; do jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds") | .counters.path_posts' "$work/eco-d$d/3-feeds.ndjson"; done | awk '$1 > 0' | wc -l)
none_days=$(for d in 2 3 4 5 6 7; do jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds") | .counters.path_none' "$work/eco-d$d/3-feeds.ndjson"; done | awk '$1 > 0' | wc -l)
expect "days 2-7 with accounts refreshed by getPosts" "$posts_days" 6
expect "days 2-7 with accounts that needed no request" "$none_days" 6
always_posts=$(jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds") | .counters.requests_get_posts' "$work/always-d4/3-feeds.ndjson")
expect "always-feed spends no getPosts request" "$always_posts" 0
check "the economical week spent fewer requests ($requests_eco) than always-feed ($requests_always)" \
  [ "$requests_eco" -lt "$requests_always" ]
faults=$(fake_stats "$port_faulty" | jq '[.faults // {} | to_entries[] | .value] | add // 0')
check "the faulty fake injected faults ($faults)" [ "$faults" -gt 0 ]
echo "requests over days 1-7: always-feed $requests_always, economical $requests_eco" >&2
finish
