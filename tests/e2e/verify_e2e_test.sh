#!/usr/bin/env bash
# ds-verify on an end-to-end database: clean (exit 0) after two days of pipelines/snapshot.sh
# --verify; then faults are planted (a snapshot off by one like, a post of an account not in users,
# a run left in_progress, a handle held twice, a future and a duplicated snapshot, an account
# selected without a snapshot), each is named, the exit is 3, --json parses with jq, and
# snapshot.sh --verify turns the findings into exit 3.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start verify_e2e  # bin, src, a fresh $work; its cluster stopped and $work removed on exit

step "two days of the pipeline, each with snapshot.sh --verify (a finding would fail the day)"
url=$(DS_BIN_DIR="$bin" DS_SOURCE_DIR="$src" E2E_SNAPSHOT_ARGS=--verify "$src/tests/scripts/e2e-db.sh" "$work" 1 2) \
  || die "building the e2e database"
. "$work/pg/env"
export DATABASE_URL="$url" DS_NOW=2026-11-03T06:00:00Z LOG_LEVEL=warning
expect "each day's --verify reported no problems" "$(grep -c '^ds-verify: no problems;' "$work/runs.log" || true)" 2
q() { psql_q -d "$url" -c "$1"; }

step "clean after the runs"
rc=0; "$bin/ds-verify" >"$work/clean.txt" 2>"$work/clean.err" || rc=$?
expect "ds-verify exits 0" "$rc" 0
expect "prints one line, the summary" "$(wc -l <"$work/clean.txt")" 1
snapshots=$(q "SELECT count(DISTINCT did) FROM snapshots")
expect "compares every account's latest snapshot" \
  "$(grep -o 'compared [0-9]* latest snapshots' "$work/clean.txt")" "compared $snapshots latest snapshots"
expect "stderr is quiet" "$(cat "$work/clean.err")" ""
rc=0; "$bin/ds-verify" --json >"$work/clean.json" || rc=$?
expect "--json exits 0" "$rc" 0
expect "--json: one summary object with no problems" "$(jq -c 'select(.type == "summary") | .problems' "$work/clean.json")" 0

step "plant the faults"
alice=$(q "SELECT did FROM snapshots WHERE date = '2026-11-03' AND likes > 0 ORDER BY did LIMIT 1")
alice_handle=$(q "SELECT handle FROM users WHERE did = '$alice'")
likes=$(q "SELECT likes FROM snapshots WHERE did = '$alice' AND date = '2026-11-03'")
other=$(q "SELECT did FROM users WHERE did <> '$alice' AND handle LIKE 'user%' ORDER BY did LIMIT 1")
bob=$(q "SELECT did FROM snapshots WHERE date = '2026-11-03' AND did NOT IN ('$alice', '$other') ORDER BY did DESC LIMIT 1")
psql_q -d "$url" <<SQL
-- a snapshot off by one like
UPDATE snapshots SET likes = likes + 1 WHERE did = '$alice' AND date = '2026-11-03';
-- a post of an account not in users: possible only without the foreign key (a hand-made schema)
ALTER TABLE posts DROP CONSTRAINT posts_did_fkey;
INSERT INTO posts (uri, did, likes, "createdAt") VALUES ('at://did:plc:untracked/app.bsky.feed.post/1', 'did:plc:untracked', 3, '2026-11-01');
-- a run that died an hour ago, and one whose ds-load is alive (this test holds its lock below)
INSERT INTO snapshot_logs (status, time_started, created_at) VALUES ('in_progress', '2026-11-03T07:00Z', now() - interval '1 hour');
INSERT INTO snapshot_logs (status, time_started, created_at, shard) VALUES ('in_progress', '2026-11-03T07:00Z', now() - interval '1 hour', '0/2');
-- a handle held twice: users.handle is UNIQUE, but handles are case-insensitive
UPDATE users SET handle = upper('$alice_handle') WHERE did = '$other';
-- a snapshot dated after today, and one duplicated (possible only without the unique constraint)
INSERT INTO snapshots (did, date, likes) VALUES ('$bob', '2026-11-20', 1);
ALTER TABLE snapshots DROP CONSTRAINT snapshots_did_date_key;
INSERT INTO snapshots (did, date, likes) SELECT did, date, likes FROM snapshots WHERE did = '$bob' AND date = '2026-11-02';
-- an account the default selection picked on both run days (viewed before them), never snapshotted
INSERT INTO users (did, handle) VALUES ('did:plc:neversnapped', 'never.test');
INSERT INTO views (did, date) VALUES ('did:plc:neversnapped', '2026-11-01');
SQL
# The lock of shard 0/2's run, held by a live session as a running ds-load would.
key=$(python3 -c 'import sys
h = 0xcbf29ce484222325
for c in b"0/2": h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
k = 28274136601026916 ^ h
print(k - (1 << 64) if k >= 1 << 63 else k)')
# Like ds-load --shard 0/2: the shard's key exclusive and the base key shared (which must not make
# the dead unsharded run look alive).
"$PG_BIN/psql" -qAt -d "$url" -c "SELECT pg_advisory_lock_shared(28274136601026916), pg_advisory_lock($key); SELECT pg_sleep(60)" \
  >/dev/null 2>&1 &
holder=$!
for _ in $(seq 1 100); do
  [ "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")" = 2 ] && break; sleep 0.1
done

step "each fault is found and named; exit 3"
rc=0; "$bin/ds-verify" --stale-days 2 >"$work/found.txt" 2>"$work/found.err" || rc=$?
expect "ds-verify exits 3" "$rc" 3
has() {  # has DESCRIPTION FIXED-STRING: a finding line holding it
  if grep -qF -- "$2" "$work/found.txt"; then ok "$1"; else bad "$1: no line with '$2'"; cat "$work/found.txt" >&2; fi
}
has "the snapshot off by one like, both values" \
  "snapshot_sums  $alice_handle ($alice)  2026-11-03: likes $((likes + 1)) in the snapshot, $likes over live posts"
has "the post of an untracked account" "untracked_post  did:plc:untracked  post at://did:plc:untracked/app.bsky.feed.post/1: its account is not in users"
has "the stale in_progress run" "started 2026-11-03T07:00:00Z: in_progress, but no session holds its run lock (advisory key 28274136601026916)"
expect "the live shard's run is not reported" "$(grep -c 'shard 0/2' "$work/found.txt" || true)" 0
has "the handle held twice" "shared_handle  $alice_handle  held by 2 accounts, want 1:"
has "the future snapshot" "dated 2026-11-20, after today 2026-11-03 (UTC)"
has "the duplicated snapshot" "2026-11-02: 2 snapshots of one day, want 1"
has "the account selected without a snapshot" \
  "stale_account  never.test (did:plc:neversnapped)  selected on the last 2 run days (2026-11-02, 2026-11-03) without a snapshot; last snapshot never"
summary=$(tail -1 "$work/found.txt")
case "$summary" in
  "ds-verify: "*" problems (snapshot_sums 1, future_snapshot 1, duplicate_snapshot 1, untracked_post 1, shared_handle 1, stale_run 1, stale_account "*) ok "summary line counts each check" ;;
  *) bad "summary line: $summary" ;;
esac

step "--json: NDJSON findings for jq"
rc=0; "$bin/ds-verify" --stale-days 2 --json >"$work/found.json" 2>/dev/null || rc=$?
expect "--json exits 3" "$rc" 3
jq -e . "$work/found.json" >/dev/null && ok "every line parses with jq" || bad "jq cannot parse the output"
expect "one finding per text line" "$(jq -s '[.[] | select(.type == "finding")] | length' "$work/found.json")" \
  "$(($(wc -l <"$work/found.txt") - 1))"
expect "the like, by field" \
  "$(jq -c "select(.check == \"snapshot_sums\") | [.did, .snapshot.likes - .live.likes]" "$work/found.json")" "[\"$alice\",1]"
expect "the summary's total" "$(jq 'select(.type == "summary") | .problems' "$work/found.json")" \
  "$(jq -s '[.[] | select(.type == "finding")] | length' "$work/found.json")"
# The holder's backend sits in pg_sleep whatever happens to its client: end it on the server.
q "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()" >/dev/null
wait "$holder" 2>/dev/null || true
for _ in $(seq 1 100); do
  [ "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")" = 0 ] && break; sleep 0.1
done

step "snapshot.sh --verify: a run that completes, on a database with problems, exits 3"
# ds-load's snapshot merge needs the unique constraint back (ON CONFLICT); the other faults stay.
q "DELETE FROM snapshots a USING snapshots b WHERE a.did = b.did AND a.date = b.date AND a.ctid > b.ctid;
   ALTER TABLE snapshots ADD CONSTRAINT snapshots_did_date_key UNIQUE (did, date)" >/dev/null
"$bin/ds-fake-appview" --port 0 --port-file "$work/port2" --day 2 --seed 7 --users 60 2>"$work/fake2.log" &
fake_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port2" ] && break; sleep 0.1; done
rc=0
BLUESKY_BASE_URL="http://127.0.0.1:$(cat "$work/port2")" RATE_LIMIT_RPS=0 DS_BIN_DIR="$bin" DS_LOCK_FILE="$work/lock" \
  "$src/pipelines/snapshot.sh" --verify --did "$bob" >/dev/null 2>"$work/run3.err" || rc=$?
expect "exit 3" "$rc" 3
expect "the run itself completed" "$(q "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" completed
expect "says ds-verify found problems" "$(grep -c '^snapshot.sh: ds-verify found problems in the database (exit 3)$' "$work/run3.err" || true)" 1

echo "$test_name: $passed passed, $failed failed" >&2
[ "$failed" = 0 ]
