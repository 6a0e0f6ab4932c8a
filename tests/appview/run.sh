#!/usr/bin/env bash
# The end-to-end suite against Bluesky's own AppView: TestNetwork (network.mjs) on loopback with a
# private PostgreSQL, pipelines/snapshot.sh for three days, compare.mjs after each (README.md there).
#
#   DS_BIN_DIR=build/bin tests/appview/run.sh      # or: make test-appview
#
# APPVIEW_SEED: the seed of the accounts' activity (default 7). E2E_KEEP=1 keeps the work directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export DS_SOURCE_DIR=${DS_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
. "$DS_SOURCE_DIR/tests/scripts/e2e-lib.sh"
seed=${APPVIEW_SEED:-7}
test_name=appview

# --- Node 22 and the pinned packages: downloaded once, reinstalled only when the lock changes -------
eval "$("$here/node-env.sh")"
stamp="$here/node_modules/.ds-installed"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1) $(node --version)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "npm ci (package-lock.json changed or first run)"
  # Install scripts off: better-sqlite3's would fetch a prebuilt binary from GitHub. It is built
  # here instead, against the headers the Node package ships (no download of those either).
  (cd "$here" && timeout 900 npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error) >&2 \
    || die "npm ci failed"
  (cd "$here" && npm_config_build_from_source=true npm_config_nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" \
    timeout 900 npm rebuild better-sqlite3 --loglevel=error) >"$here/node_modules/.rebuild.log" 2>&1 \
    || { tail -20 "$here/node_modules/.rebuild.log" >&2; die "building better-sqlite3 failed"; }
  echo "$want" >"$stamp"
fi

# The rest needs loopback only. Where the kernel lets us (root, outside a locked-down container),
# it runs in a network namespace of its own holding nothing but `lo`, so that it cannot reach
# anything else; elsewhere it runs as it is (APPVIEW_NETNS=0 skips the namespace).
if [ "${APPVIEW_NETNS:-1}" = 1 ] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec env APPVIEW_NETNS=inside unshare -n bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
[ "${APPVIEW_NETNS:-}" = inside ] && echo "== running in a network namespace with loopback only" >&2
e2e_start appview

# --- the network: its own database in the private cluster; PDS data under $work ----------------
start_cluster
psql_q -d "$url" -c "CREATE DATABASE appview" || die "creating the AppView's database"
migrate
net_pid=""
on_exit() {
  [ -n "$net_pid" ] || return 0
  # A polite stop first (the network closes its servers and database pools), then signals.
  [ -s "$work/state.json" ] && curl -fsS --max-time 15 -X POST "http://127.0.0.1:$(jq -r .control "$work/state.json")/quit" >/dev/null 2>&1
  for _ in $(seq 1 100); do kill -0 "$net_pid" 2>/dev/null || return 0; sleep 0.1; done
  kill "$net_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$net_pid" 2>/dev/null || return 0; sleep 0.1; done
  # $net_pid is timeout(1), which passed SIGTERM on to node; a -9 would not, so node first.
  pkill -9 -P "$net_pid" 2>/dev/null || true
  kill -9 "$net_pid" 2>/dev/null || true
}
step "starting TestNetwork (seed $seed)"
(cd "$here" && exec env TMPDIR="$work" timeout 900 node network.mjs --db "$(base_url_of appview)" --seed "$seed" \
  --state "$work/state.json") 2>"$work/network.log" &
net_pid=$!
for _ in $(seq 1 1200); do
  [ -s "$work/state.json" ] && break
  kill -0 "$net_pid" 2>/dev/null || break
  sleep 0.1
done
[ -s "$work/state.json" ] || { grep -v -i deprecation "$work/network.log" | tail -20 >&2; die "TestNetwork did not come up in 120 s"; }
appview=$(jq -r .appview "$work/state.json" | sed "s,//localhost:,//127.0.0.1:,")
control=$(jq -r .control "$work/state.json")
ok "TestNetwork up: $appview"

# The tracked accounts, as a deployment registers them: DID and handle, nothing else.
jq -r '.accounts[] | "INSERT INTO users (did, handle) VALUES (\u0027\(.did)\u0027, \u0027\(.handle)\u0027);"' "$work/state.json" \
  | psql_q -d "$url" || die "registering the accounts"

now1=$(date -u +%Y-%m-%dT%H:%M:%SZ)
day_of() { date -u -d "$now1 + $(($1 - 1)) day" +%Y-%m-%dT%H:%M:%SZ; }
run_day() {  # run_day N: the pipeline at DS_NOW = now1 + N-1 days, its streams in $work/dayN
  BLUESKY_BASE_URL=$appview DS_BIN_DIR=$bin DS_NOW=$(day_of "$1") DS_LOCK_FILE="$work/snapshot.lock" \
    RATE_LIMIT_RPS=0 LOG_LEVEL=info timeout 300 "$src/pipelines/snapshot.sh" --all --save-dir "$work/day$1" \
    >/dev/null 2>"$work/day$1.log"
}
dump() {  # dump N: the database as compare.mjs reads it, with day N's snapshots
  psql_q -d "$url" -v date="$(day_of "$1" | cut -c1-10)" -f "$here/dump.sql" >"$work/db$1.json"
}
compare() {  # compare N [DB_JSON]: the AppView now against the database dump (default day N's)
  (cd "$here" && timeout 120 node compare.mjs --appview "$appview" --db-json "${2:-$work/db$1.json}" \
    --date "$(day_of "$1" | cut -c1-10)" --state "$work/state.json")
}
round() {  # round K: the network applies round K of changes and answers once the AppView indexed it
  curl -fsS --max-time 120 -X POST "http://127.0.0.1:$control/round/$1" >"$work/round$1.json" \
    || die "round $1 of changes failed: $(grep -v -i deprecation "$work/network.log" | tail -5)"
  # Handles and statuses after the round, for the comparer's names.
  jq --argjson accounts "$(jq .accounts "$work/round$1.json")" '.accounts = $accounts' "$work/state.json" >"$work/state.tmp"
  mv "$work/state.tmp" "$work/state.json"
  ok "round $1: $(jq -r .done "$work/round$1.json")"
}
fetch_counter() {  # fetch_counter N STAGE NAME: a counter of day N's saved end records
  end_counter "$work/day$1/4-aggregate.ndjson" "$2" "$3"
}
check_day() {  # check_day N: the run exits 0 and the database agrees with the AppView
  local rc=0
  run_day "$1" || rc=$?
  [ "$rc" = 0 ] || { tail -20 "$work/day$1.log" >&2; die "day $1: snapshot.sh exited $rc"; }
  ok "day $1: snapshot.sh completed ($(grep -o 'run [0-9]* completed.*' "$work/day$1.log" | cut -c1-90)...)"
  dump "$1"
  if compare "$1" >"$work/compare$1.out" 2>&1; then
    ok "day $1: $(tail -1 "$work/compare$1.out")"
  else
    sed 's/^/     /' "$work/compare$1.out" | head -40 >&2
    bad "day $1: the database differs from the AppView"
  fi
}

step "day 1: backfill"
check_day 1
expect "day 1: every account took its feed (backfill)" "$(fetch_counter 1 ds-fetch-feeds reason_backfill)" "$(jq ".accounts | length" "$work/state.json")"

step "round 1 of changes"
round 1
# The negative test: day 2's AppView against day 1's database must fail, naming what differs.
if compare 1 >"$work/negative.out" 2>&1; then
  bad "negative test: day 1's database passed against the changed AppView"
else
  expect_grep '^MISMATCH account feed101 \(did:plc:[a-z0-9]+\) snapshots\.posts: expected 100, stored 101$' "$work/negative.out" \
    "negative test: a deleted post shows as feed101's posts count"
  expect_grep '^MISMATCH account mover \(did:plc:[a-z0-9]+\) users\.handle: expected "av-moved\.test", stored "av-mover\.test"$' \
    "$work/negative.out" "negative test: mover's new handle"
  expect_grep '^MISMATCH account goner \(did:plc:[a-z0-9]+\) snapshot .*: expected "none", stored "a row"$' "$work/negative.out" \
    "negative test: the deleted account"
fi

step "day 2: incremental, after deletions, undone likes, a handle takeover, a deactivation"
check_day 2
expect "day 2: the deactivated and the deleted account are left out by getProfiles" \
  "$(fetch_counter 2 ds-fetch-profiles gone)" 2
expect "day 2: two posts marked deleted (social's, feed101's)" "$(q "SELECT count(*) FROM posts WHERE deleted_at IS NOT NULL")" 2
expect "day 2: the moved handle and the taken-over one" \
  "$(q "SELECT string_agg(handle, ' ' ORDER BY handle) FROM users WHERE handle IN ('av-moved.test', 'av-mover.test')")" \
  "av-moved.test av-mover.test"

step "round 2 of changes (only the deactivated account comes back)"
round 2
step "day 3: quiet accounts take getPosts"
check_day 3
expect "day 3: the reactivated account is back" "$(fetch_counter 3 ds-fetch-profiles gone)" 1
gp=$(q "SELECT requests_get_posts FROM snapshot_logs ORDER BY id DESC LIMIT 1")
check "day 3: getPosts was used (snapshot_logs.requests_get_posts = $gp, path_posts = $(fetch_counter 3 ds-fetch-feeds path_posts))" \
  test "${gp:-0}" -gt 0 -a "$(fetch_counter 3 ds-fetch-feeds path_posts)" -gt 0

finish
