#!/usr/bin/env bash
# Synthesises what ds-aggregate would hand ds-load for USERS accounts of POSTS posts each (post, user
# and snapshot records plus the four upstream end records), or the same rows for psql; for bench and tests.
#
#   gen-stream.sh [--users N] [--posts P] [--day D] [--changed-pct K] [--format ndjson|tsv|users]
#
# Deterministic: the same arguments always give the same bytes. Accounts are did:plc:bench%08d with
# handle uN.bench.test. Every post lies in the 4 days before 2026-11-29T06:00Z. Day 1 is a backfill
# (since null, asOf that instant); day D >= 2 is a daily run D - 1 days later (since = asOf - 7
# days), and days 2 to 4 all cover every post. Each day from day 2 on, the counts of another K% of
# the posts (every (100/K)th, shifted by one each day) grow by one like and another 1% of the
# accounts get a new displayName; everything else is as the day before. So each of days 2, 3 and 4
# is a daily run over the same posts with K% of them changed.
#   ndjson  the stream ds-load reads (default)
#   tsv     the posts as COPY text rows: uri did likes replies quotes reposts createdAt sort_at
#   users   the accounts as COPY text rows: did handle
set -euo pipefail
users=10000 posts=100 day=1 changed=5 format=ndjson
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=$2; shift ;;
    --posts) posts=$2; shift ;;
    --day) day=$2; shift ;;
    --changed-pct) changed=$2; shift ;;
    --format) format=$2; shift ;;
    *) echo "gen-stream.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$day" in [1-9]) ;; *) echo "gen-stream.sh: --day is 1 to 9" >&2; exit 2 ;; esac
case "$format" in ndjson|tsv|users) ;; *) echo "gen-stream.sh: --format ndjson|tsv|users" >&2; exit 2 ;; esac

# mawk when present: several times faster than gawk at this, and its strftime takes a UTC flag.
awk_bin=$(command -v mawk || command -v gawk || echo awk)
exec "$awk_bin" -v users="$users" -v posts="$posts" -v day="$day" -v changed="$changed" -v format="$format" '
function ts(t) { return strftime("%Y-%m-%dT%H:%M:%S", t, 1) ".000Z" }
BEGIN {
  t0 = 1795500000 + 5 * 86400          # 2026-11-29T06:00:00Z (1795500000 is 2026-11-24T06:00Z)
  as_of = t0 + (day - 1) * 86400
  since = (day == 1) ? "null" : "\"" ts(as_of - 7 * 86400) "\""
  date = substr(ts(as_of), 1, 10)
  step = int(4 * 86400 / (posts + 1))  # posts spread evenly over the 4 days before t0
  every = (changed > 0) ? int(100 / changed) : 0
  n = 0
  for (i = 0; i < users; i++) {
    did = sprintf("did:plc:bench%08d", i)
    handle = "u" i ".bench.test"
    if (format == "users") { printf "%s\t%s\n", did, handle; continue }
    sl = 0; sr = 0; sq = 0; sp = 0
    # Newest first, as the API pages.
    for (j = posts - 1; j >= 0; j--) {
      uri = "at://" did "/app.bsky.feed.post/3k" sprintf("%09d", j)
      t = ts(t0 - 4 * 86400 + (j + 1) * step)
      likes = (i * 7 + j * 13) % 97
      replies = (i + j) % 11
      quotes = (i * 3 + j) % 5
      reposts = (i + j * 5) % 23
      for (d = 2; d <= day && every > 0; d++) if ((i * posts + j) % every == (d - 2) % every) likes++
      sl += likes; sr += replies; sq += quotes; sp += reposts
      if (format == "tsv")
        printf "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", uri, did, likes, replies, quotes, reposts, t, t
      else
        printf "{\"type\":\"post\",\"uri\":\"%s\",\"did\":\"%s\",\"createdAt\":\"%s\",\"sortAt\":\"%s\",\"likes\":%d,\"replies\":%d,\"quotes\":%d,\"reposts\":%d}\n", uri, did, t, t, likes, replies, quotes, reposts
    }
    n += posts
    if (format != "ndjson") continue
    name = (i % 100 < day - 1) ? "User " i " (renamed)" : "User " i
    followers = 100 + i % 1000; following = 50 + i % 300
    printf "{\"type\":\"user\",\"did\":\"%s\",\"handle\":\"%s\",\"displayName\":\"User %d\",\"avatar\":null,\"asOf\":\"%s\",\"since\":%s,\"baseline\":{\"posts\":0,\"likes\":0,\"replies\":0,\"quotes\":0,\"reposts\":0},\"profileStatus\":\"ok\",\"profile\":{\"handle\":\"%s\",\"displayName\":\"%s\",\"avatar\":null,\"followers\":%d,\"following\":%d,\"posts\":%d},\"feed\":{\"status\":\"complete\",\"pages\":%d,\"posts\":%d,\"requests\":%d,\"error\":null}}\n", did, handle, i, ts(as_of), since, handle, name, followers, following, posts, int(posts / 100) + 1, posts, int(posts / 100) + 1
    printf "{\"type\":\"snapshot\",\"did\":\"%s\",\"date\":\"%s\",\"followers\":%d,\"following\":%d,\"posts\":%d,\"likes\":%d,\"replies\":%d,\"quotes\":%d,\"reposts\":%d}\n", did, date, followers, following, posts, sl, sr, sq, sp
  }
  if (format != "ndjson") exit 0
  req = users * (int(posts / 100) + 1)
  printf "{\"type\":\"end\",\"stage\":\"ds-select-users\",\"contract\":1,\"counters\":{\"users\":%d,\"backfill\":%d,\"incremental\":%d,\"skipped\":0,\"missing\":0,\"baseline_posts\":0,\"bad_lines\":0},\"elapsed_s\":0.1}\n", users, (day == 1) ? users : 0, (day == 1) ? 0 : users
  printf "{\"type\":\"end\",\"stage\":\"ds-fetch-profiles\",\"contract\":1,\"counters\":{\"users\":%d,\"ok\":%d,\"gone\":0,\"failed\":0,\"requests\":%d,\"retries\":0,\"bad_lines\":0},\"elapsed_s\":0.1}\n", users, users, int((users + 24) / 25)
  printf "{\"type\":\"end\",\"stage\":\"ds-fetch-feeds\",\"contract\":1,\"counters\":{\"users\":%d,\"complete\":%d,\"gone\":0,\"failed\":0,\"capped\":0,\"posts\":%d,\"requests\":%d,\"retries\":0,\"bad_lines\":0},\"elapsed_s\":0.1}\n", users, users, n, req
  printf "{\"type\":\"end\",\"stage\":\"ds-aggregate\",\"contract\":1,\"counters\":{\"users\":%d,\"snapshots\":%d,\"bad_lines\":0},\"elapsed_s\":0.1}\n", users, users
}'
