#!/usr/bin/env bash
# `make demo`: a private PostgreSQL cluster and the fake AppView on loopback, the dataset's users
# registered, the daily snapshot run for day 1 (backfill) and day 2 (incremental), and a summary.
#   scripts/demo.sh RUN_DIR          # run the demo (a fresh database each time)
#   scripts/demo.sh --stop RUN_DIR   # stop the demo's PostgreSQL cluster
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${DS_BIN_DIR:-$root/build/bin}
if [ "${1:-}" = --stop ]; then
  "$root/tests/scripts/pg-cluster.sh" stop "${2:-$root/.run}/pg"
  echo "demo: PostgreSQL stopped" >&2
  exit 0
fi
run=${1:-$root/.run}
mkdir -p "$run"
run=$(cd "$run" && pwd)
users=${DEMO_USERS:-40}

url=$("$root/tests/scripts/pg-cluster.sh" start "$run/pg")
. "$run/pg/env"
psql_q() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt "$@"; }
admin_url="${url%/*}/postgres"
psql_q -d "$admin_url" -c "DROP DATABASE IF EXISTS dopplersky WITH (FORCE)" -c "CREATE DATABASE dopplersky"

"$bin/ds-fake-appview" --port 0 --port-file "$run/fake.port" --day 1 --users "$users" 2>"$run/fake-appview.log" &
fake_pid=$!
trap 'kill $fake_pid 2>/dev/null || true' EXIT
rm -f "$run/fake.port"
for _ in $(seq 1 300); do [ -s "$run/fake.port" ] && break; sleep 0.1; done
[ -s "$run/fake.port" ] || { cat "$run/fake-appview.log" >&2; echo "demo: the fake AppView did not start" >&2; exit 1; }
port=$(cat "$run/fake.port")

# The demo's settings beat any .env in the checkout: it must never touch a configured database.
export DATABASE_URL="$url" BLUESKY_BASE_URL="http://127.0.0.1:$port" RATE_LIMIT_RPS=0 DS_LOCK_FILE="$run/snapshot.lock"
echo "demo: PostgreSQL at $url, fake AppView at $BLUESKY_BASE_URL" >&2
"$bin/ds-migrate"
"$bin/ds-fake-appview" --day 1 --users "$users" seed-sql | psql_q -d "$url"

for day in 1 2; do
  curl -fsS -X POST "$BLUESKY_BASE_URL/_fake/day?day=$day" >/dev/null
  now=$(date -u -d "2026-11-01 06:00:00 UTC + $day day" +%Y-%m-%dT%H:%M:%SZ)
  echo "demo: day $day (DS_NOW=$now)" >&2
  DS_NOW=$now "$root/pipelines/snapshot.sh" --save-dir "$run/day$day" || {
    rc=$?; [ $rc = 3 ] || { echo "demo: day $day failed (exit $rc)" >&2; exit $rc; }; }
done

"$PG_BIN/psql" -d "$url" -P pager=off <<'SQL'
\echo
\echo 'What the demo stored (first 12 tracked accounts):'
SELECT u.handle,
       left(coalesce(u."displayName", ''), 20) AS "displayName",
       count(p.uri) FILTER (WHERE p.deleted_at IS NULL) AS live_posts,
       count(p.uri) FILTER (WHERE p.deleted_at IS NOT NULL) AS deleted,
       s.followers, s.likes, s.replies, s.quotes, s.reposts, s.date AS snapshot
  FROM users u
  LEFT JOIN posts p ON p.did = u.did
  LEFT JOIN LATERAL (SELECT * FROM snapshots x WHERE x.did = u.did ORDER BY date DESC LIMIT 1) s ON true
 GROUP BY u.did, u.handle, u."displayName", s.followers, s.likes, s.replies, s.quotes, s.reposts, s.date
 ORDER BY u.handle LIMIT 12;
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM posts) AS posts,
       (SELECT count(*) FROM snapshots) AS snapshots, (SELECT count(*) FROM views) AS views;
\echo 'Run log:'
SELECT id, status, time_started, round(duration::numeric, 2) AS duration_s, total_users, users_selected,
       users_gone, users_failed, posts_loaded, api_requests
  FROM snapshot_logs ORDER BY id;
SQL
cat >&2 <<TXT
demo: done. Explore with: psql '$url'
      each stage's output is in $run/day1 and $run/day2 (try: jq -c 'select(.type=="snapshot")' $run/day2/4-aggregate.ndjson)
      stop the database with: make demo-stop
TXT
