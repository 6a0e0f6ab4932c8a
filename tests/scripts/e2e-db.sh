#!/usr/bin/env bash
# Builds an end-to-end database for the operator tools' tests and the report screenshot: a private
# cluster in DIR/pg, the fake AppView's accounts, and one pipelines/snapshot.sh run per listed day.
# Leaves the cluster running (stop it with pg-cluster.sh stop DIR/pg) and prints its URL.
#
#   e2e-db.sh DIR [DAY...]     # days default to "1 2"; day N runs at 2026-11-01T06:00Z + N days
#
# E2E_SEED, E2E_USERS: the dataset (default 7, 60). E2E_FAULT_DAYS: days served with failures
# (a fifth of the requests answer 5xx, no retries), so those runs end `partial`. Days left out of
# the list have no run: the report shows them as gaps. E2E_RPS: the stages' rate cap (default 0,
# none), for runs whose requests compare with a cap. E2E_SNAPSHOT_ARGS: more snapshot.sh flags
# (--verify).
set -euo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
dir=${1:?usage: e2e-db.sh DIR [DAY...]}
shift
days=("$@")
[ ${#days[@]} -gt 0 ] || days=(1 2)
seed=${E2E_SEED:-7} users=${E2E_USERS:-60} fault_days=" ${E2E_FAULT_DAYS:-} "

mkdir -p "$dir"
chmod 755 "$dir"  # the server runs as postgres under root and must reach its data directory
fake_pid=""
trap '[ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null; true' EXIT
url=$("$src/tests/scripts/pg-cluster.sh" start "$dir/pg")
. "$dir/pg/env"

start_fake() {  # start_fake DAY [fault flags...]
  [ -n "$fake_pid" ] && { kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; }
  rm -f "$dir/port"
  "$bin/ds-fake-appview" --port 0 --port-file "$dir/port" --day "$1" --seed "$seed" --users "$users" "${@:2}" \
    2>>"$dir/fake.log" &
  fake_pid=$!
  for _ in $(seq 1 300); do [ -s "$dir/port" ] && break; sleep 0.1; done
  [ -s "$dir/port" ] || { cat "$dir/fake.log" >&2; echo "e2e-db: fake AppView did not start" >&2; exit 1; }
}

"$bin/ds-migrate" --db "$url" >/dev/null 2>"$dir/migrate.log" || { cat "$dir/migrate.log" >&2; exit 1; }
"$bin/ds-fake-appview" --day 1 --seed "$seed" --users "$users" seed-sql | "$PG_BIN/psql" -qAt -v ON_ERROR_STOP=1 -d "$url" >/dev/null

for d in "${days[@]}"; do
  # The seed's views date from day 1; each day the accounts active for this run (a view in the 7
  # days before it) view again, so that the same accounts stay selected past ACTIVE_DAYS.
  "$PG_BIN/psql" -qAt -v ON_ERROR_STOP=1 -d "$url" -c "INSERT INTO views (did, date) SELECT DISTINCT did,
    DATE '2026-11-01' + $d - 1 FROM views WHERE date >= DATE '2026-11-01' + $d - 7 ON CONFLICT DO NOTHING" >/dev/null
  faults=() attempts=${HTTP_MAX_ATTEMPTS:-4}
  if [[ $fault_days == *" $d "* ]]; then faults=(--p-5xx 0.2 --fault-seed "$d"); attempts=1; fi
  start_fake "$d" "${faults[@]}"
  rc=0
  BLUESKY_BASE_URL="http://127.0.0.1:$(cat "$dir/port")" DATABASE_URL="$url" RATE_LIMIT_RPS=${E2E_RPS:-0} \
    HTTP_MAX_ATTEMPTS=$attempts LOG_LEVEL=${LOG_LEVEL:-warning} DS_BIN_DIR="$bin" \
    DS_LOCK_FILE="$dir/snapshot.lock" DS_NOW=$(date -u -d "2026-11-01 06:00:00 UTC + $d day" +%Y-%m-%dT%H:%M:%SZ) \
    "$src/pipelines/snapshot.sh" ${E2E_SNAPSHOT_ARGS:-} >/dev/null 2>>"$dir/runs.log" || rc=$?
  # A fault day ends partial (3); any other outcome is a broken fixture.
  [ "$rc" = 0 ] || { [ "$rc" = 3 ] && [[ $fault_days == *" $d "* ]]; } \
    || { tail -20 "$dir/runs.log" >&2; echo "e2e-db: day $d exited $rc" >&2; exit 1; }
done
echo "$url"
