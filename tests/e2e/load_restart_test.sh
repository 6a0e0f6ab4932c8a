#!/usr/bin/env bash
# The database going away under ds-load, for real: PostgreSQL restarted (pg_ctl restart -m fast), then
# stopped for good, in the middle of a load. Checks the exit code and message, what stays committed, the run log, and that a rerun reaches the state of an uninterrupted load.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start load_restart
users=${RESTART_USERS:-600} posts=${RESTART_POSTS:-100}
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Starts ds-load on a FIFO and feeds it the first FIRST lines of FILE in the background; the rest
# is held back until finish_feed, so the run cannot end before the test has done its damage.
start_feed() {  # start_feed FILE FIRST LOG [ds-load flags...]
  local file=$1 first=$2 log=$3
  shift 3
  rm -f "$work/fifo" && mkfifo "$work/fifo"
  "$bin/ds-load" --batch-records 2000 "$@" <"$work/fifo" >/dev/null 2>"$log" &
  load_pid=$!
  exec 3>"$work/fifo"
  head -n "$first" "$file" >&3 &
  feeder_pid=$!
  feed_file=$file feed_first=$first
}
finish_feed() {  # sends the held-back lines (ds-load may be gone: SIGPIPE is expected) and waits
  wait "$feeder_pid" 2>/dev/null || true
  feeder_pid=""
  tail -n +"$((feed_first + 1))" "$feed_file" >&3 2>/dev/null || true
  exec 3>&-
  load_rc=0
  wait "$load_pid" || load_rc=$?
  load_pid=""
}

step "cluster, schema, $users accounts, a few posts left by the original program"
start_cluster
migrate
"$src/bench/load/gen-stream.sh" --users "$users" --format users >"$work/users.tsv"
psql_q -d "$url" -c "\\copy users (did, handle) FROM '$work/users.tsv'"
# The original kept only a few days per user; a backfill no longer sees these and marks them deleted.
q "INSERT INTO posts (uri, did, likes, \"createdAt\") SELECT 'at://' || did || '/app.bsky.feed.post/2abc', did, 3, '2020-01-01Z' FROM users ORDER BY did LIMIT 20"
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE reference TEMPLATE dopplersky"
"$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day 1 >"$work/day1.ndjson"
"$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day 2 >"$work/day2.ndjson"
lines=$(wc -l <"$work/day1.ndjson")
half=$((lines * 6 / 10))
total_posts=$((users * posts))

step "day 1 (backfill): PostgreSQL restarts in the middle of the load"
start_feed "$work/day1.ndjson" "$half" "$work/load1.log"
wait_for_count "SELECT count(*) FROM ds_user_state"  # some batches are committed
as_owner "$PG_BIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -m fast -w -t 60 restart >/dev/null
finish_feed
expect "ds-load exits 1 when the database restarts under it" "$load_rc" 1
lost=$(grep -c 'ds-load error: .*lost the connection to PostgreSQL' "$work/load1.log" || true)
expect "one error line names the lost connection" "$lost" 1
grep 'lost the connection' "$work/load1.log" | head -1 >&2
id1=$(q "SELECT max(id) FROM snapshot_logs")
expect "ds-load reconnected and recorded its run as failed, with why" \
  "$(q "SELECT status, error LIKE 'lost the connection to PostgreSQL%' FROM snapshot_logs WHERE id = $id1")" "failed|t"
committed=$(q "SELECT count(*) FROM posts WHERE uri NOT LIKE '%/2abc'")
if [ "$committed" -gt 0 ] && [ "$committed" -lt "$total_posts" ]; then ok "committed batches stayed ($committed of $total_posts posts)"
else bad "committed posts after the restart: $committed (want between 0 and $total_posts exclusive)"; fi
# Batches end at user records, so what stayed is whole users: every post with its backfill marker.
expect "only whole batches are stored (posts = $posts x backfilled users)" \
  "$committed" "$(( $(q "SELECT count(*) FROM ds_user_state") * posts ))"

step "day 1 again: the rerun completes"
rc=0; "$bin/ds-load" --batch-records 2000 <"$work/day1.ndjson" >/dev/null 2>"$work/rerun1.log" || rc=$?
expect "the rerun exits 0" "$rc" 0
expect "the rerun is recorded completed" "$(q "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" completed
rc=0; DATABASE_URL=$(base_url_of reference) "$bin/ds-load" <"$work/day1.ndjson" >/dev/null 2>"$work/ref1.log" || rc=$?
expect "the uninterrupted reference load exits 0" "$rc" 0
dump_state "$url" >"$work/state1"
dump_state "$(base_url_of reference)" >"$work/ref-state1"
if diff -q "$work/state1" "$work/ref-state1" >/dev/null; then ok "interrupted + rerun = uninterrupted ($(wc -l <"$work/state1") rows compared)"
else diff "$work/state1" "$work/ref-state1" | head -10 >&2; bad "the rerun's state differs from the uninterrupted load"; fi
expect "the original's posts are marked deleted by the backfill" \
  "$(q "SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL")" 20

step "day 2 (daily run, 5% of counts changed): PostgreSQL stops and stays down"
start_feed "$work/day2.ndjson" "$half" "$work/load2.log" --reconnect-seconds 1
wait_for_count "SELECT count(*) FROM snapshots WHERE date = '2026-11-30'"
id2=$(q "SELECT max(id) FROM snapshot_logs")
"$src/tests/scripts/pg-cluster.sh" stop "$work/pg"
finish_feed
expect "ds-load exits 1 when the database is gone" "$load_rc" 1
expect "it says it could not record the run" \
  "$(grep -c "cannot record run $id2 as failed: .*the next run will mark it failed" "$work/load2.log" || true)" 1
start_cluster  # same data directory, a new port
expect "the run is still in_progress while nobody could record it" \
  "$(q "SELECT status FROM snapshot_logs WHERE id = $id2")" in_progress
rc=0; "$bin/ds-load" --batch-records 2000 <"$work/day2.ndjson" >/dev/null 2>"$work/rerun2.log" || rc=$?
expect "the day 2 rerun exits 0" "$rc" 0
expect "the next run recorded the lost run as failed" \
  "$(q "SELECT status, error FROM snapshot_logs WHERE id = $id2")" "failed|run did not finish"
expect "and itself as completed" "$(q "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" completed
rc=0; DATABASE_URL=$(base_url_of reference) "$bin/ds-load" <"$work/day2.ndjson" >/dev/null 2>"$work/ref2.log" || rc=$?
expect "the uninterrupted day 2 reference load exits 0" "$rc" 0
dump_state "$url" >"$work/state2"
dump_state "$(base_url_of reference)" >"$work/ref-state2"
if diff -q "$work/state2" "$work/ref-state2" >/dev/null; then ok "day 2: interrupted + rerun = uninterrupted"
else diff "$work/state2" "$work/ref-state2" | head -10 >&2; bad "day 2: the rerun's state differs from the uninterrupted load"; fi
if diff -q "$work/state1" "$work/state2" >/dev/null; then bad "day 2 changed nothing (the stream should change 5% of the counts)"
else ok "day 2 changed the stored counts"; fi

finish
