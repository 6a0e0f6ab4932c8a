#!/usr/bin/env bash
# Hostile API payloads end to end: the fake AppView serves tests/fixtures/hostile/ byte for byte
# (--serve-files); the five stages run into a private PostgreSQL; stored values must be sanitised,
# bad items counted, failures confined to their user, and nothing may hang (every stage under timeout).
set -uo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
fixtures=$src/tests/fixtures/hostile
work=$(mktemp -d /tmp/ds-hostile.XXXXXX)
chmod 755 "$work"  # the server runs as postgres under root and must reach its data directory
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
  "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
die() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() {  # WANT GOT WHAT
  if [ "$1" = "$2" ]; then ok; else bad "$3: got '$2', want '$1'"; fi
}

"$bin/ds-fake-appview" --help | grep -q -- --serve-files || die "ds-fake-appview has no --serve-files mode"
"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --serve-files "$fixtures" 2>"$work/fake.log" &
fake_pid=$!
"$src/tests/scripts/pg-cluster.sh" start "$work/pg" >/dev/null || die "private PostgreSQL did not start"
. "$work/pg/env"
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || die "fake AppView did not start: $(cat "$work/fake.log")"
# Two attempts, short backoff: the failing fixtures fail fast, and a retry is still exercised.
export BLUESKY_BASE_URL="http://127.0.0.1:$(cat "$work/port")" DATABASE_URL RATE_LIMIT_RPS=0 \
  HTTP_MAX_ATTEMPTS=2 HTTP_RETRY_BACKOFF_MS=10 LOG_LEVEL=warning DS_NOW=2026-11-02T06:00:00Z PGTZ=UTC
unset LOG_FORMAT
psql_q() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt -d "$DATABASE_URL" -c "$1"; }
"$bin/ds-migrate" >/dev/null 2>"$work/migrate.log" || die "ds-migrate: $(cat "$work/migrate.log")"

A=did:plc:hostileaaaaaaaaaaaaaaaaaa B=did:plc:hostilebbbbbbbbbbbbbbbbbb C=did:plc:hostilecccccccccccccccccc
D=did:plc:hostiledddddddddddddddddd E=did:plc:hostileeeeeeeeeeeeeeeeeeee F=did:plc:hostileffffffffffffffffff
psql_q "INSERT INTO users (did, handle) VALUES ('$A','a.old.test'), ('$B','b.old.test'), ('$C','c.old.test'),
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
expect_eq "0 0 3 0 3" "${rcs[*]}" "exit codes of select, profiles (gone and bad items are no failure), feeds (B, D failed), aggregate, load (partial)"
for i in 2 3 4 5; do
  jq -e . "$work/$i.ndjson" >/dev/null 2>&1 && ok || bad "stage $i wrote a line that is not JSON"
done
end_counter() {  # FILE STAGE COUNTER
  jq -r "select(.type == \"end\" and .stage == \"$2\") | .counters.$3" "$1" | tail -1
}
user_field() {  # FILE DID JQ_PATH
  jq -r "select(.type == \"user\" and .did == \"$2\") | $3" "$1"
}

# --- getProfiles: sanitised and clamped, a missing account is gone, bad items counted ---
p=$work/2.ndjson
expect_eq ok "$(user_field "$p" "$A" .profileStatus)" "A profile status"
expect_eq "12 0 2147483647" "$(user_field "$p" "$A" '"\(.profile.followers) \(.profile.following) \(.profile.posts)"')" \
  "A counts: \"12\" read, -3 -> 0, 2^64-1 -> 2^31-1"
expect_eq 127 "$(user_field "$p" "$A" '.profile.displayName | length')" "A 10,000-character name cut to 255 bytes at a character boundary"
expect_eq "true" "$(user_field "$p" "$B" '.profile.displayName | startswith("B\ufffdname")')" "B NUL in the name became U+FFFD"
expect_eq gone "$(user_field "$p" "$E" .profileStatus)" "E left out of getProfiles: gone"
expect_eq 3 "$(end_counter "$p" ds-fetch-profiles bad_items)" "getProfiles items without a usable did counted"

# --- getAuthorFeed: every hostile item and timestamp shape; looping cursor; empty page; 502 ---
f=$work/3.ndjson
expect_eq complete "$(user_field "$f" "$A" .feed.status)" "A feed complete"
expect_eq 11 "$(user_field "$f" "$A" .feed.posts)" "A own posts (duplicates, reposts, bad items dropped)"
expect_eq failed "$(user_field "$f" "$B" .feed.status)" "B (cursor does not move) failed, not looping"
user_field "$f" "$B" .feed.error | grep -q "cursor did not advance" && ok || bad "B's error does not say the cursor stood still"
expect_eq "complete 2" "$(user_field "$f" "$C" '"\(.feed.status) \(.feed.pages)"')" "C: an empty page with a cursor is not the end"
expect_eq failed "$(user_field "$f" "$D" .feed.status)" "D (502, garbled body) failed after retries"
expect_eq skipped "$(user_field "$f" "$E" .feed.status)" "E (gone) not fetched"
expect_eq 5 "$(end_counter "$f" ds-fetch-feeds bad_items)" "unusable feed items counted (notFound, no author, null, 42, post null)"
expect_eq 2 "$(end_counter "$f" ds-fetch-feeds reposts_dropped)" "other authors' posts dropped (a repost, a blockedPost)"
expect_eq 1 "$(end_counter "$f" ds-fetch-feeds repeated_posts)" "a post listed twice written once"

# --- what PostgreSQL holds ---
expect_eq "$(printf 'é%.0s' $(seq 127))" "$(psql_q "SELECT \"displayName\" FROM users WHERE did = '$A'")" "A displayName stored cut"
expect_eq "a.hostile.test" "$(psql_q "SELECT handle FROM users WHERE did = '$A'")" "A handle updated"
expect_eq t "$(psql_q "SELECT strpos(\"displayName\", U&'\\FFFD') = 2 FROM users WHERE did = '$B'")" "B displayName stored with U+FFFD"
posts=$(psql_q "SELECT split_part(uri, '/', 5), likes, replies, quotes, reposts,
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
expect_eq 0 "$(psql_q "SELECT count(*) FROM posts WHERE uri LIKE '%/nauthor' OR did <> ALL(ARRAY['$A','$B','$C'])")" "no post without author, no other author's post"
expect_eq "12|0|2147483647|20|1|2147483647|2147483647" \
  "$(psql_q "SELECT followers, following, posts, likes, replies, quotes, reposts FROM snapshots WHERE did = '$A' AND date = '2026-11-02'")" \
  "A snapshot: sums over its posts, clamped to the int columns"
expect_eq "0|0|0|4|3|2|1" "$(psql_q "SELECT followers, following, posts, likes, replies, quotes, reposts FROM snapshots WHERE did = '$C'")" "C snapshot"
expect_eq 0 "$(psql_q "SELECT count(*) FROM snapshots WHERE did IN ('$B','$D','$E')")" "no snapshot for a failed, failed or gone user"
expect_eq "partial|2" "$(psql_q "SELECT status, users_failed FROM snapshot_logs ORDER BY id DESC LIMIT 1")" "run recorded partial, 2 users failed"

# --- a getProfiles body with raw invalid UTF-8: the batch fails cleanly (retried, then failed) ---
printf '{"type":"user","did":"%s","handle":"f.hostile.test","displayName":null,"avatar":null,"asOf":"%s","since":null,"baseline":{"posts":0,"likes":0,"replies":0,"quotes":0,"reposts":0}}\n' "$F" "$DS_NOW" >"$work/f.ndjson"
timeout 60 "$bin/ds-fetch-profiles" <"$work/f.ndjson" >"$work/f.out" 2>"$work/f.err"; rc=$?
expect_eq 3 "$rc" "ds-fetch-profiles on an invalid UTF-8 answer: exit"
expect_eq failed "$(user_field "$work/f.out" "$F" .profileStatus)" "invalid UTF-8 answer: profile failed, not crashed"

echo "hostile_payloads: $pass passed, $fail failed"
[ "$fail" = 0 ]
