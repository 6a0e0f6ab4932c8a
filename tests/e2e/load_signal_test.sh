#!/usr/bin/env bash
# SIGTERM (day 1, a backfill) and SIGINT (day 2, a daily run) sent to ds-load in the middle of a load:
# exit 130 without waiting for more input, only whole batches stored, the run recorded failed, and a rerun reaching the state of an uninterrupted load.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start load_signal
users=${SIGNAL_USERS:-500} posts=${SIGNAL_POSTS:-100}

start_cluster
# Accounts whose latest snapshot disagrees with the sum over their live posts: none, as long as
# every batch (a user's posts, its user record and its snapshot) was committed whole or not at all.
torn_users() {
  q "SELECT count(*) FROM users u
      WHERE (SELECT array[likes, replies, quotes, reposts] FROM snapshots s WHERE s.did = u.did ORDER BY date DESC LIMIT 1)
            IS DISTINCT FROM
            (SELECT array[sum(likes), sum(replies), sum(quotes), sum(reposts)]::int[] FROM posts p
              WHERE p.did = u.did AND deleted_at IS NULL HAVING count(*) > 0)"
}
# Starts ds-load on a FIFO and feeds it the first FIRST lines of FILE in the background. The FIFO
# stays open afterwards: ds-load sees no end of input until the test closes it.
start_feed() {  # start_feed FILE FIRST LOG
  rm -f "$work/fifo" && mkfifo "$work/fifo"
  "$bin/ds-load" --batch-records 2000 <"$work/fifo" >/dev/null 2>"$3" &
  load_pid=$!
  exec 3>"$work/fifo"
  head -n "$2" "$1" >&3 &
  feeder_pid=$!
}
# SIGKILL at exit: a failed test may be one where ds-load does not stop on a signal.
on_exit() { [ -z "${load_pid:-}" ] || kill -KILL "$load_pid" 2>/dev/null; }
interrupt() {  # interrupt SIGNAL: signal ds-load, wait for it while its input is still open
  kill "-$1" "$load_pid"
  # A guard against hanging, not a timing assertion: ds-load must exit on its own, input still open.
  for _ in $(seq 1 600); do kill -0 "$load_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$load_pid" 2>/dev/null; then bad "ds-load still running 60 s after SIG$1 with its input open"
  else ok "ds-load exited after SIG$1 without waiting for its input to end"; fi
  load_rc=0
  wait "$load_pid" || load_rc=$?
  load_pid=""
  exec 3>&-  # only now does the input end
  wait "$feeder_pid" 2>/dev/null || true
  feeder_pid=""
}
check_interrupted() {  # check_interrupted LOG WHAT
  expect "$2: exit code 130" "$load_rc" 130
  expect "$2: the log says the open batch was rolled back" \
    "$(grep -c 'ds-load warning: interrupted by signal: the open batch was rolled back' "$1" || true)" 1
  expect "$2: the run is recorded failed, interrupted by signal" \
    "$(q "SELECT status, error FROM snapshot_logs ORDER BY id DESC LIMIT 1")" "failed|interrupted by signal"
  expect "$2: no ds-load session left behind" \
    "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dopplersky'")" 0
  expect "$2: every account's latest snapshot equals its posts' sums (no torn batch)" "$(torn_users)" 0
}
rerun_matches_reference() {  # rerun_matches_reference FILE WHAT
  local rc=0
  "$bin/ds-load" --batch-records 2000 <"$1" >/dev/null 2>"$work/rerun.log" || rc=$?
  expect "$2: the rerun exits 0" "$rc" 0
  expect "$2: the rerun is recorded completed" "$(q "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" completed
  rc=0
  DATABASE_URL=$(base_url_of reference) "$bin/ds-load" <"$1" >/dev/null 2>"$work/reference.log" || rc=$?
  expect "$2: the uninterrupted reference load exits 0" "$rc" 0
  dump_state "$url" >"$work/state"
  dump_state "$(base_url_of reference)" >"$work/ref-state"
  if diff -q "$work/state" "$work/ref-state" >/dev/null; then ok "$2: interrupted + rerun = uninterrupted ($(wc -l <"$work/state") rows)"
  else diff "$work/state" "$work/ref-state" | head -10 >&2; bad "$2: the rerun's state differs from the uninterrupted load"; fi
}

step "cluster, schema, $users accounts"
migrate
"$src/bench/load/gen-stream.sh" --users "$users" --format users >"$work/users.tsv"
psql_q -d "$url" -c "\\copy users (did, handle) FROM '$work/users.tsv'"
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE reference TEMPLATE dopplersky"
"$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day 1 >"$work/day1.ndjson"
"$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day 2 >"$work/day2.ndjson"
lines=$(wc -l <"$work/day1.ndjson")
part=$((lines * 6 / 10))

step "day 1 (backfill): SIGTERM in the middle of the load"
start_feed "$work/day1.ndjson" "$part" "$work/term.log"
wait_for_count "SELECT count(*) FROM ds_user_state"  # some batches are committed
interrupt TERM
check_interrupted "$work/term.log" SIGTERM
stored=$(q "SELECT count(*) FROM ds_user_state")
if [ "$stored" -gt 0 ] && [ "$stored" -lt "$users" ]; then ok "SIGTERM: the committed batches stayed ($stored of $users accounts)"
else bad "SIGTERM: $stored of $users accounts stored (want some, not all)"; fi
expect "SIGTERM: the stored accounts are whole batches from the start of the stream" \
  "$(q "SELECT count(*) = max(substr(did, 14)::int) + 1 AND count(*) * $posts = (SELECT count(*) FROM posts) FROM ds_user_state")" t
rerun_matches_reference "$work/day1.ndjson" "day 1"

step "day 2 (daily run, 5% of counts changed): SIGINT in the middle of the load"
start_feed "$work/day2.ndjson" "$part" "$work/int.log"
wait_for_count "SELECT count(*) FROM snapshots WHERE date = '2026-11-30'"
interrupt INT
check_interrupted "$work/int.log" SIGINT
stored=$(q "SELECT count(*) FROM snapshots WHERE date = '2026-11-30'")
if [ "$stored" -gt 0 ] && [ "$stored" -lt "$users" ]; then ok "SIGINT: the committed batches stayed ($stored of $users day-2 snapshots)"
else bad "SIGINT: $stored of $users day-2 snapshots stored (want some, not all)"; fi
rerun_matches_reference "$work/day2.ndjson" "day 2"

finish
