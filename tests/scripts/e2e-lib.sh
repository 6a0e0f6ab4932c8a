# Shared by the end-to-end scripts (sourced after `test_name=...`): counted checks, psql, and the
# dump of everything a load decides, which two databases must agree on. A script may redefine a
# helper after sourcing this (for example an expect that runs a command).
passed=0 failed=0
step() { echo "== $*" >&2; }
ok() { echo "ok   $*" >&2; passed=$((passed + 1)); }
bad() { echo "FAIL $*" >&2; failed=$((failed + 1)); }
expect() {  # expect DESCRIPTION ACTUAL WANTED
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi
}
die() { echo "FAIL $*" >&2; echo "$test_name: $passed passed, $((failed + 1)) failed" >&2; exit 1; }
# PG_BIN comes from the cluster's env file (tests/scripts/pg-cluster.sh), read at call time.
psql_q() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt "$@"; }
dump_state() {  # dump_state URL: users, posts, snapshots and backfill markers, without wall-clock stamps
  psql_q -d "$1" <<'SQL'
SELECT 'u', did, handle, "displayName", avatar, skip_user FROM users ORDER BY did;
SELECT 'p', uri, did, likes, replies, quotes, reposts, "createdAt", sort_at, deleted_at IS NOT NULL FROM posts ORDER BY uri;
SELECT 's', did, date, followers, following, posts, likes, replies, quotes, reposts FROM snapshots ORDER BY did, date;
SELECT 'b', did, backfilled_at IS NOT NULL, backfill_posts FROM ds_user_state ORDER BY did;
SQL
}
