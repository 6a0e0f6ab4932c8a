#!/usr/bin/env bash
# Runs that cannot collide: while one pipelines/snapshot.sh run is loading, a second one with the same
# lock file (cron overlap) and a third with another lock file (another host) both exit 4 and write nothing; the first then finishes as if alone.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start run_overlap
seed=${E2E_SEED:-11} users=${OVERLAP_USERS:-24}
held_pid=""
# A ds-load left stopped (SIGSTOP) would never see the SIGTERM that ends the run it belongs to.
on_exit() { [ -z "$held_pid" ] || kill -CONT "$held_pid" 2>/dev/null; }

step "cluster, schema, fake AppView with 50 ms latency, $users accounts"
start_cluster
migrate
start_fake fake --day 1 --seed "$seed" --users "$users" --latency-ms 50
seed_users
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0
export LOG_LEVEL=${LOG_LEVEL:-warning} DS_NOW=2026-11-02T06:00:00Z DS_BIN_DIR="$bin"

step "run 1 starts; once its ds-load holds the database lock it is paused (SIGSTOP) so the overlap is certain"
DS_LOCK_FILE="$work/snapshot.lock" "$src/pipelines/snapshot.sh" >"$work/run1.out" 2>"$work/run1.err" &
first_pid=$!
for _ in $(seq 1 600); do
  [ "$(q "SELECT count(*) FROM snapshot_logs WHERE status = 'in_progress'" 2>/dev/null || echo 0)" = 1 ] && break
  kill -0 "$first_pid" 2>/dev/null || break
  sleep 0.1
done
expect "run 1 recorded itself in_progress" "$(q "SELECT count(*) FROM snapshot_logs WHERE status = 'in_progress'")" 1
held_pid=$(pgrep -P "$first_pid" -x ds-load || true)
[ -n "$held_pid" ] || { cat "$work/run1.err" >&2; die "run 1's ds-load is not running"; }
kill -STOP "$held_pid"
# While stopped, its session keeps the advisory lock and its inherited descriptor keeps the flock.
expect "run 1's ds-load holds the advisory run lock" \
  "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
        AND classid::bigint = 28274136601026916 >> 32 AND objid::bigint = 28274136601026916 & 4294967295")" 1

table_counts() { q "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts), (SELECT count(*) FROM snapshots), (SELECT count(*) FROM ds_user_state)"; }
counts_before=$(table_counts)

step "run 2, same lock file (cron overlap): refused before it starts"
rc=0; DS_LOCK_FILE="$work/snapshot.lock" "$src/pipelines/snapshot.sh" >"$work/run2.out" 2>"$work/run2.err" || rc=$?
expect "run 2 exits 4" "$rc" 4
expect "run 2 says another run holds the lock file" \
  "$(grep -c "^snapshot.sh: another snapshot run holds $work/snapshot.lock; not starting (exit 4)$" "$work/run2.err" || true)" 1
expect "run 2 started no stage (its stderr is that one line)" "$(wc -l <"$work/run2.err")" 1
expect "run 2 wrote no run row" "$(q "SELECT count(*) FROM snapshot_logs")" 1

step "run 3, another lock file (as from another host): ds-load's database lock refuses it"
rc=0; DS_LOCK_FILE="$work/other-host.lock" "$src/pipelines/snapshot.sh" >"$work/run3.out" 2>"$work/run3.err" || rc=$?
expect "run 3 exits 4" "$rc" 4
expect "run 3's ds-load says another ds-load run is in progress" \
  "$(grep -c 'ds-load error: another ds-load run is in progress (lock key 28274136601026916); not loading' "$work/run3.err" || true)" 1
expect "run 3 wrote no run row" "$(q "SELECT count(*) FROM snapshot_logs")" 1
expect "runs 2 and 3 changed no table" "$(table_counts)" "$counts_before"

step "two ds-load processes directly: the second exits 4 at once, whatever its input"
rc=0; "$bin/ds-load" </dev/null >/dev/null 2>"$work/load4.err" || rc=$?
expect "the second ds-load exits 4" "$rc" 4
expect "and writes no run row" "$(q "SELECT count(*) FROM snapshot_logs")" 1

step "run 1 resumes and finishes as if it had been alone"
kill -CONT "$held_pid"
held_pid=""
rc=0; wait "$first_pid" || rc=$?
expect "run 1 exits 0" "$rc" 0
expect "run 1 is recorded completed, the only row" "$(q "SELECT string_agg(status, ',') FROM snapshot_logs")" completed
check "the database holds exactly one day-1 run's rows (ds-e2e-check)" e2e_check --db "$url" --days 1 --runs 1

step "with the lock free again, the same lock file works"
rc=0; DS_LOCK_FILE="$work/snapshot.lock" "$src/pipelines/snapshot.sh" >/dev/null 2>"$work/run5.err" || rc=$?
expect "a later run exits 0" "$rc" 0
expect "and adds its own row" "$(q "SELECT count(*) FROM snapshot_logs WHERE status = 'completed'")" 2

finish
