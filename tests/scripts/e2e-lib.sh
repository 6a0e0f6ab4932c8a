# Shared by the CLI and end-to-end scripts (sourced, then `e2e_start NAME`): counted checks, the
# set-up every script repeats (work directory, private cluster, fake AppView), psql and state dumps.
# A script may redefine a helper after sourcing this, and may define on_exit for its own clean-up.

# --- counted checks; `finish` prints the closing "NAME: N passed, N failed" line ---------------
passed=0 failed=0
step() { echo "== [${SECONDS}s] $*" >&2; }
ok() { [ $# = 0 ] || echo "ok   $*" >&2; passed=$((passed + 1)); }  # bare `ok`: counted, silent
bad() { echo "FAIL $*" >&2; failed=$((failed + 1)); }
die() { echo "FAIL $*" >&2; echo "$test_name: $passed passed, $((failed + 1)) failed" >&2; exit 1; }
finish() { echo "$test_name: $passed passed, $failed failed" >&2; [ "$failed" = 0 ]; }
expect() {  # expect DESCRIPTION ACTUAL WANTED
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi
}
# check [--show FILE] DESCRIPTION COMMAND...: COMMAND's exit status is the check; a failure also
# shows the end of FILE. Returns 0 either way, so a failed check never ends a `set -e` script.
check() {
  local show=""
  if [ "$1" = --show ]; then show=$2; shift 2; fi
  local what=$1; shift
  if "$@"; then ok "$what"; return 0; fi
  bad "$what"
  if [ -n "$show" ]; then tail -c 600 "$show" | cat -v | sed 's/^/     /' >&2; fi
  return 0
}
expect_grep() {  # expect_grep ERE FILE DESCRIPTION
  if grep -qE -- "$1" "$2"; then ok; else bad "$3: /$1/ not in: $(head -c 400 "$2")"; fi
}
expect_no_grep() {  # expect_no_grep STRING FILE DESCRIPTION
  if grep -qF -- "$1" "$2"; then bad "$3: '$1' found in: $(grep -F -- "$1" "$2" | head -c 400)"; else ok; fi
}

# --- set-up --------------------------------------------------------------------------------------
# e2e_start NAME: sets test_name, bin (DS_BIN_DIR), src, a fresh $work and DS_LOCK_FILE in it;
# $work is removed on exit (kept with E2E_KEEP=1) after on_exit, every background job and the
# cluster in $work/pg are stopped.
e2e_start() {
  test_name=$1
  bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
  src=${DS_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  work=$(mktemp -d "/tmp/ds-$1.XXXXXX")
  chmod 755 "$work"  # a private cluster's server runs as postgres under root and must reach it
  # snapshot.sh's run lock is host-wide by default: a test sharing it would refuse to start beside
  # a benchmark, another suite or the host's real nightly run (exit 4), or hold theirs off.
  export DS_LOCK_FILE="$work/snapshot.lock"
  trap e2e_cleanup EXIT
}
e2e_cleanup() {
  if declare -F on_exit >/dev/null; then on_exit || true; fi
  local p
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  if [ -d "$work/pg" ]; then "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true; fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
# start_cluster: a private PostgreSQL in $work/pg (again after a stop: same data, new port); sets
# url and exports DATABASE_URL (its "dopplersky" database), and PG_BIN & co. from its env file.
start_cluster() {
  url=$("$src/tests/scripts/pg-cluster.sh" start "$work/pg") || die "cannot start PostgreSQL"
  . "$work/pg/env"
  export DATABASE_URL=$url
}
base_url_of() { echo "${url%/*}/$1"; }  # base_url_of DB: the cluster's database DB
# start_fake NAME ARGS...: a fake AppView on loopback in the background (log $work/NAME.log); its
# port lands in port_NAME.
start_fake() {
  local name=$1; shift
  "$bin/ds-fake-appview" --port 0 --port-file "$work/$name.port" "$@" 2>"$work/$name.log" &
  for _ in $(seq 1 300); do [ -s "$work/$name.port" ] && break; sleep 0.1; done
  [ -s "$work/$name.port" ] || { cat "$work/$name.log" >&2; die "fake AppView $name did not start"; }
  printf -v "port_$name" '%s' "$(cat "$work/$name.port")"
}
fake_stats() { curl -fsS "http://127.0.0.1:$1/_fake/stats"; }  # fake_stats PORT
fake_reset() { curl -fsS -X POST "http://127.0.0.1:$1/_fake/stats/reset" >/dev/null; }
fake_day() { curl -fsS -X POST "http://127.0.0.1:$1/_fake/day?day=$2" >/dev/null; }  # fake_day PORT DAY
day_now() { date -u -d "2026-11-01 06:00:00 UTC + $1 day" +%Y-%m-%dT%H:%M:%SZ; }  # the run clock of day N
# seed_users [URL]: registers the fake dataset's users ($seed, $users, day 1) in URL's database
# (default the main one), copied as e2e_seed_users: what ds-e2e-check compares the users with.
seed_users() {
  "$bin/ds-fake-appview" --day 1 --seed "$seed" --users "$users" seed-sql | psql_q -d "${1:-$url}" || die "seeding users"
  psql_q -d "${1:-$url}" -c "CREATE TABLE e2e_seed_users AS SELECT * FROM users" || die "e2e_seed_users"
}
migrate() {  # migrate [ds-migrate flags]: DATABASE_URL's database (or --db) to the current schema
  "$bin/ds-migrate" "$@" >/dev/null 2>"$work/migrate.log" || die "ds-migrate $*: $(cat "$work/migrate.log")"
}

# --- reading results -----------------------------------------------------------------------------
# PG_BIN comes from the cluster's env file (tests/scripts/pg-cluster.sh), read at call time.
psql_q() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt "$@"; }
q() { psql_q -d "$url" -c "$1"; }  # q SQL: one statement against the cluster's main database
wait_for_count() {  # wait_for_count SQL: until the query answers a number > 0 (a guard, not a timing assertion)
  for _ in $(seq 1 600); do
    n=$(q "$1" 2>/dev/null || echo 0)
    [ "${n:-0}" -gt 0 ] && return 0
    sleep 0.1
  done
  die "timed out waiting for: $1"
}
dump_state() {  # dump_state URL: users, posts, snapshots and backfill markers, without wall-clock stamps
  psql_q -d "$1" <<'SQL'
SELECT 'u', did, handle, "displayName", avatar, skip_user FROM users ORDER BY did;
SELECT 'p', uri, did, likes, replies, quotes, reposts, "createdAt", sort_at, deleted_at IS NOT NULL FROM posts ORDER BY uri;
SELECT 's', did, date, followers, following, posts, likes, replies, quotes, reposts FROM snapshots ORDER BY did, date;
SELECT 'b', did, backfilled_at IS NOT NULL, backfill_posts, last_snapshot_date, last_snapshot_posts FROM ds_user_state ORDER BY did;
SQL
}
# end_counter FILE STAGE NAME: counter NAME of STAGE's last end record in a saved stream.
end_counter() { jq -r --arg s "$2" --arg n "$3" 'select(.type == "end" and .stage == $s) | .counters[$n]' "$1" | tail -1; }
# e2e_check ARGS...: ds-e2e-check of the fake dataset ($seed, $users) with ARGS (--db, --days,
# --runs); on failure its complaints go to stderr.
e2e_check() {
  "$bin/ds-e2e-check" --seed "$seed" --users "$users" "$@" >"$work/check.out" 2>&1 && return 0
  grep -v '^ok' "$work/check.out" | head -20 >&2
  return 1
}
