#!/usr/bin/env bash
# Sharded runs end to end: 4 shards at once under GNU parallel against one database and the fake
# AppView leave exactly the rows of one unsharded run (day 1 backfill, day 2 incremental); the run
# lock, the stale-run cleanup and the flock file are per shard; snapshot-sharded.sh splits the rate
# cap and reports the worst shard's exit code.
set -uo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
seed=11 users=40
work=$(mktemp -d /tmp/ds-shard.XXXXXX)
chmod 755 "$work"  # the server runs as postgres under root and must reach its data directory
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" || true
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
test_name=shard
. "$src/tests/scripts/e2e-lib.sh"  # counts, die, psql_q, dump_state
# check NAME CONDITION: CONDITION is eval'd; $last is the exit code of the command just before.
check() { last=$?; if eval "$2"; then ok "$1"; else bad "$1"; return 1; fi; }
step() { echo "== $* (${SECONDS}s)" >&2; }
command -v parallel >/dev/null || die "GNU parallel is not installed (apt-get install parallel)"

step "snapshot-sharded.sh with a stub pipeline: rate share, per-shard files, exit codes"
mkdir -p "$work/stub"
cp "$src/pipelines/snapshot-sharded.sh" "$work/stub/"
cat >"$work/stub/snapshot.sh" <<'EOF'
#!/usr/bin/env bash
# Stands in for snapshot.sh: records what a shard got, exits with the code STUB_CODES lists for it.
k=${2%/*}
echo "rps=$RATE_LIMIT_RPS metrics_env=${METRICS_FILE:-none} args=$*" >"$STUB_OUT/shard-$k"
codes=($STUB_CODES)
exit "${codes[$k]:-0}"
EOF
chmod +x "$work/stub/snapshot.sh"
export STUB_OUT=$work/stub-out
mkdir -p "$STUB_OUT"
stub() { rm -f "$STUB_OUT"/*; "$work/stub/snapshot-sharded.sh" "$@" >/dev/null 2>"$work/stub.err"; }
# Each run checks a rate split and an exit-code combination at once: GNU parallel starts slowly.
# (Exit 0 and exit 4 alone are covered by the real runs below; 7 stands for any other code.)
RATE_LIMIT_RPS=10 STUB_CODES="0 3 0 0" METRICS_FILE=/m/dopplersky.prom stub 4 --all --save-dir "/s d"
rc=$?
check "all 4 shards ran; exit codes 0 3 0 0 give 3" '[ "$(ls "$STUB_OUT" | wc -l)" = 4 ] && [ $rc = 3 ]'
check "on one host every shard gets the host's 10 requests/s (its rate file keeps them within it together)" \
  '[ "$(cat "$STUB_OUT"/* | grep -c "^rps=10 ")" = 4 ]'
check "each shard gets --shard K/4, its own save dir and metrics file, the other arguments" \
  'grep -qx "rps=10 metrics_env=none args=--shard 2/4 --save-dir /s d/shard-2-of-4 --metrics-file /m/dopplersky-shard-2-of-4.prom --all" "$STUB_OUT/shard-2"'
RATE_LIMIT_RPS=0 STUB_CODES="3 130 4 0" stub 4
rc=$?
check "RATE_LIMIT_RPS=0 (no cap) stays 0; exit codes 3 130 4 0 give 130" '[ "$(cat "$STUB_OUT"/* | grep -c "^rps=0 ")" = 4 ] && [ $rc = 130 ]'
RATE_LIMIT_RPS=3 STUB_CODES="0 2 3 4" stub 4
rc=$?
check "fewer requests/s than shards, one host: 3 each; exit codes 0 2 3 4 give 2" \
  '[ "$(cat "$STUB_OUT"/* | grep -c "^rps=3 ")" = 4 ] && [ $rc = 2 ]'
printf '# hosts\nx@h1\n\n2/x@h2\n' >"$work/hosts"
RATE_LIMIT_RPS=10 stub 4 --dry-run --sshlogin 2/x@h1 --sshloginfile "$work/hosts" --sshlogin y@h3
check "three hosts (h1 named twice) share the cap: 10/3 = 3.333333 requests/s each" \
  'grep -q "4 shards on 3 host(s), 3.333333 requests/s per host" "$work/stub.err"'
for case in "1 4 3 0:1" "0 4 3 7:1"; do
  STUB_CODES=${case%:*} stub 4
  rc=$?
  check "shard exit codes ${case%:*} give ${case#*:}" '[ $rc = "${case#*:}" ]'
done
STUB_CODES="0 0" stub 2 --shard 0/2
check "--shard is refused (set per shard): exit 2" '[ $last = 2 ]'
stub 0
check "N = 0 is refused: exit 2" '[ $last = 2 ]'

step "a private cluster, the fake AppView, two databases seeded alike"
url=$("$src/tests/scripts/pg-cluster.sh" start "$work/pg") || die "cannot start PostgreSQL"
. "$work/pg/env"
server=${url%/*}
"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --day 1 --seed $seed --users $users 2>"$work/fake.log" &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || die "fake AppView did not start: $(cat "$work/fake.log")"
port=$(cat "$work/port")
export BLUESKY_BASE_URL="http://127.0.0.1:$port" RATE_LIMIT_RPS=0 LOG_LEVEL=warning DS_LOCK_FILE=$work/snapshot.lock
for db in single sharded locks byhand byhand_ref; do
  psql_q -d "$server/postgres" -c "CREATE DATABASE $db" || die "create $db"
  "$bin/ds-migrate" --db "$server/$db" >/dev/null 2>"$work/migrate.log" || die "ds-migrate $db: $(cat "$work/migrate.log")"
done
for db in single sharded byhand byhand_ref; do
  "$bin/ds-fake-appview" --day 1 --seed $seed --users $users seed-sql | psql_q -d "$server/$db" || die "seeding $db"
done
# ds-e2e-check compares against the users as seeded.
psql_q -d "$server/sharded" -c "CREATE TABLE e2e_seed_users AS SELECT * FROM users" || die "e2e_seed_users"
day_now() { date -u -d "2026-11-01 06:00:00 UTC + $1 day" +%Y-%m-%dT%H:%M:%SZ; }

for day in 1 2; do
  step "day $day: one unsharded run, and 4 shards at once with GNU parallel"
  [ $day = 2 ] && { curl -fsS -X POST "http://127.0.0.1:$port/_fake/day?day=2" >/dev/null || die "day 2"; }
  DATABASE_URL=$server/single DS_NOW=$(day_now $day) "$src/pipelines/snapshot.sh" --save-dir "$work/single-$day" 2>"$work/single.log" \
    || { cat "$work/single.log" >&2; die "the unsharded run of day $day exited $?"; }
  DATABASE_URL=$server/sharded DS_NOW=$(day_now $day) LOG_LEVEL=info \
    "$src/pipelines/snapshot-sharded.sh" 4 --save-dir "$work/sharded-$day" 2>"$work/sharded.log"
  rc=$?
  check "day $day: snapshot-sharded.sh 4 exits 0" '[ $rc = 0 ]' || tail -20 "$work/sharded.log" >&2
  check "day $day: every shard's lines are tagged" '[ "$(grep -c "^shard [0-3]/4	.*run [0-9]* completed" "$work/sharded.log")" = 4 ]'

  dump_state "$server/single" >"$work/state-single-$day"
  dump_state "$server/sharded" >"$work/state-sharded-$day"
  check "day $day: users, posts, snapshots and backfill markers identical to the unsharded run" \
    'diff -q "$work/state-single-$day" "$work/state-sharded-$day" >/dev/null' \
    || diff "$work/state-single-$day" "$work/state-sharded-$day" | head -10 >&2
  check "day $day: the state is not trivially empty" \
    '[ "$(grep -c "^s|" "$work/state-single-$day")" -gt 10 ] && [ "$(grep -c "^p|" "$work/state-single-$day")" -gt 10000 ]'
  check "day $day: the sharded database passes ds-e2e-check" \
    '"$bin/ds-e2e-check" --db "$server/sharded" --seed $seed --users $users --days "$( [ $day = 1 ] && echo 1 || echo 1,2)" >"$work/check.log"' \
    || cat "$work/check.log" >&2

  # Each shard selected its own users: disjoint, together the unsharded selection.
  jq -r 'select(.type == "user") | .did' "$work/single-$day/1-users.ndjson" | sort >"$work/dids-single"
  cat "$work"/sharded-$day/shard-*-of-4/1-users.ndjson | jq -r 'select(.type == "user") | .did' | sort >"$work/dids-sharded"
  check "day $day: the shards' selections are disjoint and their union is the unsharded one" \
    'cmp -s "$work/dids-single" "$work/dids-sharded" && [ -z "$(uniq -d "$work/dids-sharded")" ]'
  nonempty=0
  for k in 0 1 2 3; do
    [ "$(grep -c '"type":"user"' "$work/sharded-$day/shard-$k-of-4/1-users.ndjson")" -gt 0 ] && nonempty=$((nonempty + 1))
  done
  check "day $day: all 4 shards had users" '[ $nonempty = 4 ]'
done

step "the run log: one completed row per shard and day"
per_shard=$(psql_q -d "$server/sharded" -c "SELECT string_agg(shard || ':' || n, ',' ORDER BY shard) FROM (SELECT shard, count(*) n FROM snapshot_logs WHERE status = 'completed' GROUP BY shard) x")
rows=$(psql_q -d "$server/sharded" -c "SELECT count(*) FROM snapshot_logs")
check "8 rows, all completed, 2 per shard label ($per_shard)" '[ "$per_shard" = "0/4:2,1/4:2,2/4:2,3/4:2" ] && [ "$rows" = 8 ]'
sharded_sum=$(psql_q -d "$server/sharded" -c "SELECT sum(total_users) || '/' || sum(users_selected) FROM (SELECT * FROM snapshot_logs ORDER BY id DESC LIMIT 4) x")
single_last=$(psql_q -d "$server/single" -c "SELECT total_users || '/' || users_selected FROM snapshot_logs ORDER BY id DESC LIMIT 1")
check "day 2: the shards' total_users/users_selected add up to the unsharded run's ($single_last)" '[ "$sharded_sum" = "$single_last" ]'

step "the run lock is per shard (database advisory locks)"
locks=$server/locks
mkfifo "$work/fifo"
"$bin/ds-load" --db "$locks" --shard 1/4 <"$work/fifo" >/dev/null 2>"$work/holder.log" &
holder=$!
pids+=($holder)
exec 7>"$work/fifo"  # keeps the holder's stdin open: it waits inside its run, holding its locks
for _ in $(seq 1 100); do
  [ "$(psql_q -d "$locks" -c "SELECT count(*) FROM snapshot_logs WHERE status = 'in_progress' AND shard = '1/4'")" = 1 ] && break
  sleep 0.1
done
"$bin/ds-load" --db "$locks" --shard 1/4 </dev/null >/dev/null 2>"$work/l1.log"
check "a second run of shard 1/4 exits 4 (locked)" '[ $last = 4 ] && grep -q "another ds-load run is in progress" "$work/l1.log"'
"$bin/ds-load" --db "$locks" --shard 2/4 </dev/null >/dev/null 2>"$work/l2.log"
check "shard 2/4 runs meanwhile (exit 1: an empty stream has no end records, but not 4)" '[ $last = 1 ]'
"$bin/ds-load" --db "$locks" </dev/null >/dev/null 2>"$work/l3.log"
check "an unsharded run exits 4 while any shard runs" '[ $last = 4 ]'
kill -9 $holder; wait $holder 2>/dev/null
exec 7>&-
in_progress() { psql_q -d "$locks" -c "SELECT string_agg(coalesce(shard, '-') || ':' || status, ',' ORDER BY id) FROM snapshot_logs WHERE status = 'in_progress' OR error = 'run did not finish'"; }
state=$(in_progress)
check "the killed run's row stays in_progress ($state)" '[ "$state" = "1/4:in_progress" ]'
# An unsharded run that died too: only an unsharded run may close it.
psql_q -d "$locks" -c "INSERT INTO snapshot_logs (status, time_started) VALUES ('in_progress', now())"
"$bin/ds-load" --db "$locks" --shard 2/4 </dev/null >/dev/null 2>&1
state=$(in_progress)
check "shard 2/4 leaves other shards' in_progress rows alone ($state)" '[ "$state" = "1/4:in_progress,-:in_progress" ]'
"$bin/ds-load" --db "$locks" --shard 1/4 </dev/null >/dev/null 2>&1
state=$(in_progress)
check "shard 1/4's next run marks its own dead run failed, and only that one ($state)" '[ "$state" = "1/4:failed,-:in_progress" ]'
"$bin/ds-load" --db "$locks" </dev/null >/dev/null 2>&1
state=$(in_progress)
check "the unsharded run closes the unsharded dead run ($state)" '[ "$state" = "1/4:failed,-:failed" ]'

step "shards started by hand, --shard on ds-select-users only: each ds-load locks by its stream's shard"
byhand=$server/byhand
export DS_NOW=$(day_now 2)
upstream() {  # upstream K: shard K/2's selection and fetches, as an operator would type them
  "$bin/ds-select-users" --db "$byhand" --shard "$1/2" | "$bin/ds-fetch-profiles" | "$bin/ds-fetch-feeds" | "$bin/ds-aggregate"
}
runs_of() { psql_q -d "$byhand" -c "SELECT string_agg(shard || ':' || status, ',' ORDER BY shard) FROM snapshot_logs"; }
upstream 0 >"$work/byhand-0.ndjson" || die "shard 0/2's upstream stages"
first=$(head -1 "$work/byhand-0.ndjson")
check "the stream names its shard in its first line ($first)" '[ "$first" = "{\"type\":\"selection\",\"shard\":\"0/2\"}" ]'
# Shard 0/2's ds-load reads its whole stream, then waits on its open input, holding its locks.
rm -f "$work/fifo" && mkfifo "$work/fifo"
"$bin/ds-load" --db "$byhand" <"$work/fifo" >/dev/null 2>"$work/byhand-0.log" &
holder=$!
pids+=($holder)
exec 7>"$work/fifo"
cat "$work/byhand-0.ndjson" >&7
for _ in $(seq 1 100); do [ "$(runs_of)" = "0/2:in_progress" ] && break; sleep 0.1; done
state=$(runs_of)
check "shard 0/2's ds-load runs under its stream's shard ($state)" '[ "$state" = "0/2:in_progress" ]'
upstream 1 | "$bin/ds-load" --db "$byhand" >/dev/null 2>"$work/byhand-1.log"
check "shard 1/2's pipeline runs beside it and exits 0" '[ $last = 0 ]' || cat "$work/byhand-1.log" >&2
"$bin/ds-load" --db "$byhand" <"$work/byhand-0.ndjson" >/dev/null 2>"$work/byhand-again.log"
check "shard 0/2's stream loaded again meanwhile exits 4" \
  '[ $last = 4 ] && grep -q "another ds-load run is in progress" "$work/byhand-again.log"'
"$bin/ds-load" --db "$byhand" </dev/null >/dev/null 2>"$work/byhand-unsharded.log"
check "an unsharded run exits 4 meanwhile" '[ $last = 4 ]'
exec 7>&-
wait $holder
check "shard 0/2's run exits 0 once its input ends" '[ $last = 0 ]' || cat "$work/byhand-0.log" >&2
state=$(runs_of)
check "one completed run per shard, labelled by its stream ($state)" '[ "$state" = "0/2:completed,1/2:completed" ]'
DATABASE_URL=$server/byhand_ref "$src/pipelines/snapshot.sh" 2>"$work/byhand-ref.log" \
  || die "the unsharded reference run: $(cat "$work/byhand-ref.log")"
dump_state "$byhand" >"$work/state-byhand"
dump_state "$server/byhand_ref" >"$work/state-byhand-ref"
check "the two shards stored what one unsharded run stores" \
  'diff -q "$work/state-byhand" "$work/state-byhand-ref" >/dev/null && [ "$(grep -c "^s|" "$work/state-byhand")" -gt 10 ]' \
  || diff "$work/state-byhand" "$work/state-byhand-ref" | head -10 >&2
unset DS_NOW

step "the flock file is per shard"
# Held by this shell (fd 6) rather than a helper process, so nothing outlives the test.
exec 6>"$work/snapshot.shard-1-of-2.lock"
flock -n 6 || die "cannot take the shard 1/2 lock file"
DATABASE_URL=$locks DS_NOW=$(day_now 1) "$src/pipelines/snapshot.sh" --shard 1/2 2>"$work/f1.log"
check "snapshot.sh --shard 1/2 exits 4 while its lock file is held" '[ $last = 4 ] && grep -q "snapshot.shard-1-of-2.lock" "$work/f1.log"'
DATABASE_URL=$locks DS_NOW=$(day_now 1) "$src/pipelines/snapshot.sh" --shard 0/2 2>"$work/f0.log"
check "snapshot.sh --shard 0/2 runs meanwhile" '[ $last = 0 ]' || cat "$work/f0.log" >&2
DATABASE_URL=$locks DS_NOW=$(day_now 1) "$src/pipelines/snapshot-sharded.sh" 2 2>"$work/f2.log"
check "snapshot-sharded.sh 2 reports the locked shard: exit 4" '[ $last = 4 ] && grep -q "shard 1/2 exited with 4" "$work/f2.log"'
exec 6>&-

echo "shard: $passed passed, $failed failed"
[ "$failed" = 0 ]
