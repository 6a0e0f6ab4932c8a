#!/usr/bin/env bash
# A backfill larger than the run's budget (BACKFILL_MAX_REQUESTS) spread over daily runs of
# pipelines/snapshot.sh on the fake AppView: it finishes after the runs the budget implies, no
# stored page is requested twice (the server's counts), and the account has no snapshot until then.
# Runs are skipped for longer than the window once: the next window reaches back to the last run.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start progressive_backfill
seed=7 users=8 budget=25

start_cluster
# Account 0 has ~120 pages of history (10,600 posts and reposts at --posts-scale 1), 2 in a window.
start_fake fake --day 1 --seed "$seed" --users "$users" --posts-scale 1
base="http://127.0.0.1:$port_fake"
export BLUESKY_BASE_URL=$base RATE_LIMIT_RPS=0 LOG_LEVEL=${LOG_LEVEL:-warning} BACKFILL_MAX_REQUESTS=$budget

migrate
seed_users
did=$(q "SELECT did FROM users WHERE handle = 'user0000.fake.test'")
[ -n "$did" ] || die "account 0 is not in the seeded users"

ms() { date -u -d "$1" +%s%3N; }
# The AppView's cursor is "<epoch ms>__<cid>" (docs/real-appview.md), as the fake's now is.
cursor_ms() { case "$1" in *__*) echo "${1%%__*}" ;; *) ms "$1" ;; esac; }
# pages CURSOR STOP_MS: getAuthorFeed pages of account 0 the way ds-fetch-feeds asks for them, from
# CURSOR (empty: the newest) until the end, or until a cursor at or before STOP_MS (the window).
pages() {
  local cursor=$1 stop=$2 n=0 body
  own=0  # and its own posts on them
  while :; do
    if [ -n "$cursor" ]; then body=$(curl -fsS -G "$base/xrpc/app.bsky.feed.getAuthorFeed" --data-urlencode "actor=$did" \
                                       --data-urlencode "limit=100" --data-urlencode "cursor=$cursor")
    else body=$(curl -fsS -G "$base/xrpc/app.bsky.feed.getAuthorFeed" --data-urlencode "actor=$did" --data-urlencode "limit=100"); fi
    n=$((n + 1))
    own=$((own + $(jq --arg d "$did" '[.feed[] | select(.post.author.did == $d and .reason == null)] | length' <<<"$body")))
    cursor=$(jq -r '.cursor // empty' <<<"$body")
    [ -z "$cursor" ] && break
    [ -n "$stop" ] && [ "$(cursor_ms "$cursor")" -le "$stop" ] && break
  done
  echo "$n"
}
feed_requests() { fake_stats "$port_fake" | jq -r '.requests.getAuthorFeed'; }
run_day() {  # run_day N: the day's pipeline for account 0, its getAuthorFeed requests in $got
  DS_NOW=$(day_now "$1") "$src/pipelines/snapshot.sh" --did "$did" --save-dir "$work/d$1" || die "day $1 run exited $?"
  got=$(feed_requests)
}
state() { q "SELECT backfilled_at IS NOT NULL, COALESCE(backfill_cursor, '-') FROM ds_user_state WHERE did = '$did'"; }
snapshots() { q "SELECT count(*) FROM snapshots WHERE did = '$did'"; }
last_run() { q "SELECT status || ' ' || COALESCE(backfills_partial, -1) FROM snapshot_logs ORDER BY id DESC LIMIT 1"; }

step "day 1: the backfill starts; its first page is free, $budget more from the budget"
history=$(pages "" "")
[ "$history" -gt $((3 * budget)) ] || die "account 0 has only $history pages: not well over the budget of $budget"
fake_reset "$port_fake"
run_day 1
expect "day 1 getAuthorFeed requests" "$got" $((budget + 1))
expect "day 1 feed status" "$(jq -r 'select(.type == "user") | .feed.status' "$work/d1/3-feeds.ndjson")" partial
IFS='|' read -r marked cursor <<<"$(state)"
expect "day 1 backfill marker" "$marked" f
[ "$cursor" != - ] && ok "day 1 stored the cursor $cursor" || bad "day 1 stored no cursor"
expect "day 1 snapshots of a half history" "$(snapshots)" 0
expect "day 1 run status and backfills in progress" "$(last_run)" "completed 1"
total=$got

fake_day "$port_fake" 2
rest=$(pages "$cursor" "")  # the history below the stored cursor: the days to come fetch each page once
runs=$((1 + (rest + budget - 1) / budget))
expected_total=$((budget + 1 + rest))
[ "$runs" -ge 4 ] || die "only $runs runs: the gap below needs at least 4"
# Run days: 2, then none for 10 days (longer than the 7-day window), then daily again.
days=(1 2) && for ((k = 12; ${#days[@]} < runs; k++)); do days+=("$k"); done
step "runs on days ${days[*]:1}: $rest history pages left, $budget a run, after each run's window"
for ((i = 1; i < runs; i++)); do
  d=${days[$i]} prev=${days[$((i - 1))]}
  [ "$d" -gt 2 ] && fake_day "$port_fake" "$d"
  # The window reaches back to the run's window start, or to the last run when that is later.
  stop=$(($(ms "$(day_now "$d")") - 7 * 86400000)) last=$(ms "$(day_now "$prev")")
  window=$(pages "" $((last < stop ? last : stop)))
  fake_reset "$port_fake"
  run_day "$d"
  today=$((rest < budget ? rest : budget))
  rest=$((rest - today))
  expect "day $d getAuthorFeed requests (window $window + history $today)" "$got" $((window + today))
  total=$((total + got))
  expected_total=$((expected_total + window))
  IFS='|' read -r marked next <<<"$(state)"
  if [ "$i" -lt $((runs - 1)) ]; then
    expect "day $d backfill marker" "$marked" f
    [ "$next" != "$cursor" ] && [ "$next" != - ] && ok "day $d moved the cursor on" || bad "day $d cursor: $next"
    cursor=$next
    expect "day $d snapshots of a half history" "$(snapshots)" 0
    expect "day $d run status and backfills in progress" "$(last_run)" "completed 1"
  else
    expect "day $d (the last) backfill marker and cursor" "$marked|$next" "t|-"
    expect "day $d run status" "$(last_run)" "completed 0"
  fi
done
expect "getAuthorFeed requests over all runs = history pages + window pages" "$total" "$expected_total"

step "the snapshot of the completed history equals the sums over its live posts"
date=$(day_now "$d"); date=${date%%T*}
expect "snapshots after completion" "$(snapshots)" 1
expect "snapshot = live posts' sums" \
  "$(q "SELECT likes, replies, quotes, reposts FROM snapshots WHERE did = '$did' AND date = '$date'")" \
  "$(q "SELECT sum(likes), sum(replies), sum(quotes), sum(reposts) FROM posts WHERE did = '$did' AND deleted_at IS NULL")"
expect "no live post stored twice" "$(q "SELECT count(*) - count(DISTINCT uri) FROM posts WHERE did = '$did'")" 0

step "the next day is an ordinary incremental run: its window only"
d=$((d + 1))
fake_day "$port_fake" "$d"
window=$(pages "" $(($(ms "$(day_now "$d")") - 7 * 86400000)))
fake_reset "$port_fake"
run_day "$d"
expect "day $d getAuthorFeed requests" "$got" "$window"
expect "snapshots" "$(snapshots)" 2
expect "day $d snapshot = live posts' sums" \
  "$(q "SELECT likes, replies, quotes, reposts FROM snapshots WHERE did = '$did' ORDER BY date DESC LIMIT 1")" \
  "$(q "SELECT sum(likes), sum(replies), sum(quotes), sum(reposts) FROM posts WHERE did = '$did' AND deleted_at IS NULL")"
pages "" "" >/dev/null
expect "every post the feed serves is stored once, the gap's included" \
  "$(q "SELECT count(*) FROM posts WHERE did = '$did' AND deleted_at IS NULL")" "$own"
finish
