#!/usr/bin/env bash
# The request benchmark (make bench-requests; not part of make test): API requests per account of a
# daily run, always-feed (FEED_ECONOMY=off) against the request economy, beside the lower bound.
#
#   DS_BIN_DIR=build-release/bin bench/requests/run.sh [--users N] [--days D] [--seed S] [--rps R] [--keep]
#
# Both ways run the same days 1..D of the fake AppView's sparse world (--activity sparse: most
# accounts post less than once a day, 1 in 40 dozens a day, 3 in 1000 have 120,000+ posts) into two
# databases of one private cluster. The lower bound of a day (docs/performance-requests.md) is
# ceil(selected / 25) getProfiles + one feed request per account that created a post since the run
# before + the window posts of every other account / 25 (getPosts). The last column counts the
# lines in which the two databases' dumps differ (dump_state): 0, as the sparse world has no
# "+1 -1 older" day (docs/request-economy.md). Requests are counted by the stages' end records
# and, as a cross-check, by the fake AppView itself. --rps R runs days 2..D under RATE_LIMIT_RPS=R,
# as production does (day 1's backfill stays uncapped: at 10/s it alone would take 15 minutes): how
# full the getPosts batches stay when ds-fetch-profiles hands users on at the shared cap's pace.
set -euo pipefail
users=1000 days=8 seed=3 keep=0 rps=0
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=$2; shift ;;
    --days) days=$2; shift ;;
    --seed) seed=$2; shift ;;
    --rps) rps=$2; shift ;;
    --keep) keep=1 ;;
    *) echo "bench-requests: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$days" -ge 2 ] && [ "$days" -le 30 ] || { echo "bench-requests: --days is 2 to 30" >&2; exit 2; }
export E2E_KEEP=$keep
. "$(dirname "$0")/../../tests/scripts/e2e-lib.sh"
e2e_start bench-requests
say() { echo "bench-requests: $*" >&2; }
dataset=(--seed "$seed" --users "$users" --activity sparse)

say "a private cluster and the fake AppView ($users accounts, sparse activity, seed $seed, days 2-$days at ${rps} requests/s, 0 = no cap)"
start_cluster
# Its advertised RateLimit headers would pace day 1 (thousands of pages) to 3000 per 5 minutes.
# --threads: a connection holds a server thread while kept alive, and the two fetching stages run
# at once with MAX_WORKERS (10) connections each. With 16 threads the feed stage's connections
# left 4 of the profile stage's waiting in the backlog until curl's 30 s timeout: 4 or 5 retried
# getProfiles a day on both ways, and runs of 31 s instead of 1.
start_fake fake --day 1 --threads 64 --rate-limit 1000000000 --rate-window-s 60 "${dataset[@]}"
# Day 1 is every account's backfill, the 120,000-post ones included: no run limit may cut it, so
# that days 2..D are all daily runs. No rate cap: the fake AppView is on loopback.
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0 LOG_LEVEL=warning \
       MAX_POSTS_PER_USER=10000000 BACKFILL_MAX_REQUESTS=100000000
for db in always eco; do
  psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE $db" >/dev/null
  migrate --db "$(base_url_of "$db")"
  "$bin/ds-fake-appview" --day 1 "${dataset[@]}" seed-sql | psql_q -d "$(base_url_of "$db")" >/dev/null
done

# requests FILE: the run's API requests (both fetching stages), from the saved stream's end records.
requests() {
  jq -s 'map(select(.type == "end" and (.stage == "ds-fetch-profiles" or .stage == "ds-fetch-feeds"))
             | .counters.requests) | add' "$1"
}
selected() { end_counter "$1" ds-select-users users; }
# served: the fake AppView's own count of API requests since its last reset.
served() { fake_stats "$port_fake" | jq '[.requests[]] | add'; }
# lower_bound DAY: "accounts with a new post|window posts of the others|feed pages past the first
# that those with a new post need", over the accounts the always-feed run of DAY snapshotted (it
# stores every post of them). The last is what the issue's bound leaves out: a window of n own
# posts takes at least ceil(n/100) requests whichever way it is read (reposts only add to it).
lower_bound() {
  local now prev date
  now=$(day_now "$1") prev=$(day_now $(($1 - 1))) date=${now%%T*}
  psql_q -d "$(base_url_of always)" -c "
    WITH acc AS (
      SELECT p.did,
             bool_or(COALESCE(p.sort_at, p.\"createdAt\") >= '$prev') AS created,
             count(*) FILTER (WHERE COALESCE(p.sort_at, p.\"createdAt\") >= timestamptz '$now' - interval '7 days') AS window_posts
        FROM posts p
       WHERE p.deleted_at IS NULL AND p.did IN (SELECT did FROM snapshots WHERE date = '$date')
       GROUP BY p.did)
    SELECT count(*) FILTER (WHERE created), COALESCE(sum(window_posts) FILTER (WHERE NOT created), 0),
           COALESCE(sum(GREATEST((window_posts + 99) / 100 - 1, 0)) FILTER (WHERE created), 0) FROM acc"
}

printf '%-4s %8s %11s %11s %11s %9s %9s %11s %6s %s\n' day accounts always/acct economy/acct lower/acct \
  eco/always eco/lower "eco/(lower+pages)" diffs "economy paths (feed, getPosts, none)" | tee "$work/table"
for day in $(seq 1 "$days"); do
  fake_day "$port_fake" "$day"
  for db in always eco; do
    economy=on
    [ $db = always ] && economy=off
    fake_reset "$port_fake"
    cap=0
    [ "$day" -ge 2 ] && cap=$rps
    started=$(date +%s.%N)
    RATE_LIMIT_RPS=$cap FEED_ECONOMY=$economy DS_NOW=$(day_now "$day") DATABASE_URL=$(base_url_of $db) \
      "$src/pipelines/snapshot.sh" --all --save-dir "$work/$db-$day" 2>"$work/$db-$day.log" \
      || { tail -5 "$work/$db-$day.log" >&2; die "day $day into $db failed"; }
    echo "$day $db $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >>"$work/seconds"
    sent=$(requests "$work/$db-$day/3-feeds.ndjson") at_server=$(served)
    [ "$sent" = "$at_server" ] || say "day $day $db: the stages counted $sent requests, the fake AppView $at_server"
  done
  a=$(selected "$work/always-$day/3-feeds.ndjson")
  ra=$(requests "$work/always-$day/3-feeds.ndjson") re=$(requests "$work/eco-$day/3-feeds.ndjson")
  IFS='|' read -r created window_posts pages < <(lower_bound "$day")
  lower=$(( (a + 24) / 25 + created + (window_posts + 24) / 25 ))
  diffs=$(diff <(dump_state "$(base_url_of always)") <(dump_state "$(base_url_of eco)") | grep -c '^[<>]' || true)
  paths=$(jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds")
                 | "\(.counters.path_feed) \(.counters.path_posts) \(.counters.path_none)"' "$work/eco-$day/3-feeds.ndjson" | tail -1)
  awk -v d="$day" -v a="$a" -v ra="$ra" -v re="$re" -v lb="$lower" -v pg="$pages" -v df="$diffs" -v paths="$paths" 'BEGIN {
    printf "%-4s %8d %11.3f %11.3f %11.3f %8.2fx %8.2fx %16.2fx %6d %s\n", d, a, ra / a, re / a, lb / a, re / ra, re / lb,
           re / (lb + pg), df, paths }' \
    | tee -a "$work/table"
done

# Days 2..D against the issue's targets: at most 0.4x always-feed, within 1.5x of the lower bound.
awk 'NR > 2 { if ($6 + 0 > e) e = $6 + 0; if ($7 + 0 > l) l = $7 + 0; if ($8 + 0 > p) p = $8 + 0; d += $9 }
     END { printf "days 2-%d: worst economy/always %.2fx (target <= 0.40x), worst economy/lower bound %.2fx (target <= 1.50x; %.2fx counting the pages of long windows), %d differing dump lines\n", NR - 1, e, l, p, d }' \
  "$work/table"
# The steady state: from day N + 2 on, every account has had its first full refresh after the
# backfill (N = FULL_REFRESH_DAYS), so these days show what the refreshes cost in the long run, the
# figure behind a choice of N (docs/performance-requests.md, "Choosing FULL_REFRESH_DAYS").
# ds-fetch-feeds holds the period to the window (TIME_RANGE_DAYS), whatever FULL_REFRESH_DAYS asks.
refresh_days=${FULL_REFRESH_DAYS:-7} window_days=${TIME_RANGE_DAYS:-7}
[ "$refresh_days" -le "$window_days" ] || refresh_days=$window_days
if [ "$days" -ge $((refresh_days + 2)) ]; then
  awk -v from=$((refresh_days + 2)) -v n="$refresh_days" 'NR > 1 && $1 >= from {
         ra += $2 * $3; re += $2 * $4; r = $6 + 0; if (lo == "" || r < lo) lo = r; if (r > hi) hi = r; to = $1 }
       END { printf "days %d-%d (every first refresh done, refresh period %d days): economy/always %.3fx over the days together, %.2fx to %.2fx a day\n", from, to, n, re / ra, lo, hi }' \
    "$work/table"
fi
# Where the economy's requests went, day by day: what the lower bound counts, and what it leaves out
# (the full refreshes FULL_REFRESH_DAYS asks for, and the second and later feed pages of accounts
# whose window holds more than one page).
printf '\n%-4s %11s %13s %9s %9s %13s %13s %12s %10s %10s\n' day getProfiles getAuthorFeed getPosts URIs/req \
  "feed accounts" "extra pages" "full refresh" "always s" "economy s"
for d in $(seq 2 "$days"); do
  jq -r --arg d "$d" 'select(.type == "end" and .stage == "ds-fetch-feeds") | .counters
    | [$d, (.requests_get_author_feed), (.requests_get_posts), (.get_posts_uris), (.path_feed), (.reason_full_refresh)] | @tsv' \
    "$work/eco-$d/3-feeds.ndjson" | tail -1 | while IFS=$'\t' read -r day feed posts uris accounts refresh; do
      profiles=$(jq -r 'select(.type == "end" and .stage == "ds-fetch-profiles") | .counters.requests' "$work/eco-$d/3-feeds.ndjson" | tail -1)
      # Wall time of the whole snapshot.sh run, each way: at a cap, about its requests / cap.
      ts=$(awk -v d="$day" '$1 == d && $2 == "always" { a = $3 } $1 == d && $2 == "eco" { e = $3 } END { print a, e }' "$work/seconds")
      awk -v d="$day" -v pr="$profiles" -v f="$feed" -v p="$posts" -v u="$uris" -v a="$accounts" -v r="$refresh" -v ts="$ts" 'BEGIN {
        split(ts, t, " ")
        printf "%-4s %11d %13d %9d %9.1f %13d %13d %12d %10.1f %10.1f\n", d, pr, f, p, p ? u / p : 0, a, f - a, r, t[1], t[2] }'
    done
done
reasons=$(for d in $(seq 2 "$days"); do
  jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds") | .counters | to_entries[]
         | select(.key | startswith("reason_")) | "\(.key) \(.value)"' "$work/eco-$d/3-feeds.ndjson"
done | awk '{ n[substr($1, 8)] += $2 } END { for (k in n) if (n[k] > 0) printf "%s %d, ", k, n[k] }')
say "economy, days 2-$days, accounts by reason: ${reasons%, }"

# The floor any full-refresh schedule meets (docs/performance-requests.md, "Against the targets").
# An account with posts whose feed was never taken on days 2..D for a reason of its own (it only
# went quiet, dropped posts getPosts explained, or was refreshed) must get a full refresh within
# FULL_REFRESH_DAYS of its day-1 backfill: inside days 2..D when D - 1 <= FULL_REFRESH_DAYS. Take
# every refresh out of the economy's days and add one for each such account: no schedule spends
# less over days 2..D, and the worst day's ratio is at least the ratio of the sums.
if [ $((days - 1)) -le "$refresh_days" ]; then
  must=$(for d in $(seq 2 "$days"); do
    jq -r 'select(.type == "user" and .feed.reason != null)
           | "\(.did) \(.feed.reason) \(.profile.posts // 0)"' "$work/eco-$d/3-feeds.ndjson"
  done | awk '{ if ($2 != "quiet" && $2 != "posts_dropped" && $2 != "full_refresh") own[$1] = 1; if ($3 > 0) posts[$1] = 1; seen[$1] = 1 }
              END { for (a in seen) if (!(a in own) && (a in posts)) n++; print n + 0 }')
  read -r sum_always sum_base < <(for d in $(seq 2 "$days"); do
      echo "$(requests "$work/always-$d/3-feeds.ndjson") $(requests "$work/eco-$d/3-feeds.ndjson") $(jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds") | .counters.reason_full_refresh' "$work/eco-$d/3-feeds.ndjson" | tail -1)"
    done | awk '{ a += $1; b += $2 - $3 } END { print a, b }')
  awk -v m="$must" -v a="$sum_always" -v b="$sum_base" -v d="$days" -v n="$refresh_days" 'BEGIN {
    printf "refresh floor, days 2-%d: %d accounts with posts took no feed of their own and need a full refresh within %d days of the backfill; with exactly one each and nothing else changed, days 2-%d would cost %.3fx always-feed: no refresh schedule brings the worst day below that\n", d, m, n, d, (b + m) / a }'
fi
