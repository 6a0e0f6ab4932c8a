#!/usr/bin/env bash
# Hostile API payloads end to end: the fake AppView serves tests/fixtures/hostile/ byte for byte
# (--serve-files); the five stages run into a private PostgreSQL; stored values must be sanitised,
# bad items counted, failures confined to their user, and nothing may hang (every stage under timeout).
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start hostile_payloads
fixtures=$src/tests/fixtures/hostile

"$bin/ds-fake-appview" --help | grep -q -- --serve-files || die "ds-fake-appview has no --serve-files mode"
start_fake fake --serve-files "$fixtures"
start_cluster
# Two attempts, short backoff: the failing fixtures fail fast, and a retry is still exercised.
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0 \
  HTTP_MAX_ATTEMPTS=2 HTTP_RETRY_BACKOFF_MS=10 LOG_LEVEL=warning DS_NOW=2026-11-02T06:00:00Z PGTZ=UTC
unset LOG_FORMAT
migrate

A=did:plc:hostileaaaaaaaaaaaaaaaaaa B=did:plc:hostilebbbbbbbbbbbbbbbbbb C=did:plc:hostilecccccccccccccccccc
D=did:plc:hostiledddddddddddddddddd E=did:plc:hostileeeeeeeeeeeeeeeeeeee F=did:plc:hostileffffffffffffffffff
q "INSERT INTO users (did, handle) VALUES ('$A','a.old.test'), ('$B','b.old.test'), ('$C','c.old.test'),
        ('$D','d.old.test'), ('$E','e.old.test')" >/dev/null

# The daily pipeline, each stage bounded in time (124 = it hung) and its output kept.
stages=(ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load)
timeout 60 "$bin/ds-select-users" --all 2>"$work/1.err" >"$work/1.ndjson"
rcs=($?)
prev="$work/1.ndjson"
for i in 1 2 3 4; do
  timeout 60 "$bin/${stages[$i]}" <"$prev" >"$work/$((i + 1)).ndjson" 2>"$work/$((i + 1)).err"
  rcs+=($?)
  prev="$work/$((i + 1)).ndjson"
done
expect "exit codes of select, profiles (gone and bad items are no failure), feeds (B, D failed), aggregate, load (partial)" "${rcs[*]}" "0 0 3 0 3"
for i in 2 3 4 5; do
  jq -e . "$work/$i.ndjson" >/dev/null 2>&1 && ok || bad "stage $i wrote a line that is not JSON"
done
user_field() {  # FILE DID JQ_PATH
  jq -r "select(.type == \"user\" and .did == \"$2\") | $3" "$1"
}

# --- getProfiles: sanitised and clamped, a missing account is gone, bad items counted ---
p=$work/2.ndjson
expect "A profile status" "$(user_field "$p" "$A" .profileStatus)" ok
expect "A counts: \"12\" read, -3 -> 0, 2^64-1 -> 2^31-1" "$(user_field "$p" "$A" '"\(.profile.followers) \(.profile.following) \(.profile.posts)"')" \
  "12 0 2147483647"
expect "A 10,000-character name cut to 255 bytes at a character boundary" "$(user_field "$p" "$A" '.profile.displayName | length')" 127
expect "B NUL in the name became U+FFFD" "$(user_field "$p" "$B" '.profile.displayName | startswith("B\ufffdname")')" "true"
expect "E left out of getProfiles: gone" "$(user_field "$p" "$E" .profileStatus)" gone
expect "getProfiles items without a usable did counted" "$(end_counter "$p" ds-fetch-profiles bad_items)" 3

# --- getAuthorFeed: every hostile item and timestamp shape; looping cursor; empty page; 502 ---
f=$work/3.ndjson
expect "A feed complete" "$(user_field "$f" "$A" .feed.status)" complete
expect "A own posts (duplicates, reposts, bad items dropped)" "$(user_field "$f" "$A" .feed.posts)" 11
expect "B (cursor does not move) failed, not looping" "$(user_field "$f" "$B" .feed.status)" failed
user_field "$f" "$B" .feed.error | grep -q "cursor did not advance" && ok || bad "B's error does not say the cursor stood still"
expect "C: an empty page with a cursor is not the end" "$(user_field "$f" "$C" '"\(.feed.status) \(.feed.pages)"')" "complete 2"
expect "D (502, garbled body) failed after retries" "$(user_field "$f" "$D" .feed.status)" failed
expect "E (gone) not fetched" "$(user_field "$f" "$E" .feed.status)" skipped
expect "unusable feed items counted (notFound, no author, null, 42, post null)" "$(end_counter "$f" ds-fetch-feeds bad_items)" 5
expect "other authors' posts dropped (a repost, a blockedPost)" "$(end_counter "$f" ds-fetch-feeds reposts_dropped)" 2
expect "a post listed twice written once" "$(end_counter "$f" ds-fetch-feeds repeated_posts)" 1

# --- what PostgreSQL holds ---
expect "A displayName stored cut" "$(q "SELECT \"displayName\" FROM users WHERE did = '$A'")" "$(printf 'é%.0s' $(seq 127))"
expect "A handle updated" "$(q "SELECT handle FROM users WHERE did = '$A'")" "a.hostile.test"
expect "B displayName stored with U+FFFD" "$(q "SELECT strpos(\"displayName\", U&'\\FFFD') = 2 FROM users WHERE did = '$B'")" t
posts=$(q "SELECT split_part(uri, '/', 5), likes, replies, quotes, reposts,
  to_char(\"createdAt\", 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), to_char(sort_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')
  FROM posts WHERE did = '$A' ORDER BY 1")
want="p01|5|1|3|2|2026-11-01T10:00:00.000000|2026-11-01T10:00:00.000000
p02|7|0|0|2147483647|2026-10-31T09:00:00.123456|2026-10-31T09:00:00.123456
p03|0|0|2147483647|0|2026-10-30T06:00:00.000000|2026-10-30T06:00:00.000000
p04|1|0|0|0|2099-01-01T00:00:00.000000|2026-10-29T00:00:00.000000
p05|1|0|0|0|0001-01-01T00:00:00.000000|0001-01-01T00:00:00.000000
p06|1|0|0|0|1970-01-01T00:00:00.000000|1970-01-01T00:00:00.000000
p07|1|0|0|0|2026-10-27T12:00:00.000000|2026-10-27T12:00:00.000000
p08|1|0|0|0|2026-10-26T00:00:00.000000|2026-10-26T00:00:00.000000
p09|1|0|0|0|2026-10-26T00:00:00.000000|2026-10-26T00:00:00.000000
p10|1|0|0|0|2026-10-25T00:00:00.000000|2026-10-25T00:00:00.000000
p11|1|0|0|0|2026-10-24T00:00:00.000000|2026-10-24T00:00:00.000000"
if [ "$posts" = "$want" ]; then ok; else bad "A's stored posts differ:"; diff <(echo "$want") <(echo "$posts") >&2; fi
expect "no post without author, no other author's post" "$(q "SELECT count(*) FROM posts WHERE uri LIKE '%/nauthor' OR did <> ALL(ARRAY['$A','$B','$C'])")" 0
expect "A snapshot: sums over its posts, clamped to the int columns" \
  "$(q "SELECT followers, following, posts, likes, replies, quotes, reposts FROM snapshots WHERE did = '$A' AND date = '2026-11-02'")" \
  "12|0|2147483647|20|1|2147483647|2147483647"
expect "C snapshot" "$(q "SELECT followers, following, posts, likes, replies, quotes, reposts FROM snapshots WHERE did = '$C'")" "0|0|0|4|3|2|1"
expect "no snapshot for a failed, failed or gone user" "$(q "SELECT count(*) FROM snapshots WHERE did IN ('$B','$D','$E')")" 0
expect "run recorded partial, 2 users failed" "$(q "SELECT status, users_failed FROM snapshot_logs ORDER BY id DESC LIMIT 1")" "partial|2"

# --- a getProfiles body with raw invalid UTF-8: the batch fails cleanly (retried, then failed) ---
printf '{"type":"user","did":"%s","handle":"f.hostile.test","displayName":null,"avatar":null,"asOf":"%s","since":null,"baseline":{"posts":0,"likes":0,"replies":0,"quotes":0,"reposts":0}}\n' "$F" "$DS_NOW" >"$work/f.ndjson"
timeout 60 "$bin/ds-fetch-profiles" <"$work/f.ndjson" >"$work/f.out" 2>"$work/f.err"; rc=$?
expect "ds-fetch-profiles on an invalid UTF-8 answer: exit" "$rc" 3
expect "invalid UTF-8 answer: profile failed, not crashed" "$(user_field "$work/f.out" "$F" .profileStatus)" failed

finish
