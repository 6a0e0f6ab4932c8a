#!/usr/bin/env bash
# The daily snapshot as one shell pipeline:
#   ds-select-users | ds-fetch-profiles | ds-fetch-feeds | ds-aggregate | ds-load
# Configuration comes from each stage's flags, the environment or .env (see docs/operations.md).
set -uo pipefail

usage() {
  cat <<'TXT'
Usage: pipelines/snapshot.sh [--all|--simple-query] [--did DID]... [--config FILE] [--save-dir DIR]
                             [--shard K/N] [--metrics-file PATH] [--verify] [--verbose|--quiet] [--health-check]
Runs the daily snapshot for the active users (a views row in the last 7 days), or --all users.
  --all, --simple-query  every user in the users table (the original's --simple-query)
  --did DID              only this account (repeatable)
  --config FILE          read settings from FILE instead of ./.env
  --save-dir DIR         keep each stage's output in DIR (1-users.ndjson ... 4-aggregate.ndjson)
                         for debugging and replay: `build/bin/ds-aggregate < DIR/3-feeds.ndjson | build/bin/ds-load`
  --shard K/N            only shard K of N (0 <= K < N) of the users; the run log row, the run lock
                         and the lock file are this shard's (see pipelines/snapshot-sharded.sh)
  --metrics-file PATH    ds-load writes the run's Prometheus metrics there at the end (or METRICS_FILE)
  --verify               after a run that finished (0 or 3), audit the database with ds-verify; its
                         problems make the exit 3, a check that cannot run makes it 1
  --health-check         check the database and the API, run nothing (exit 0, 5 db, 6 api)
  --verbose, --quiet     log level for every stage
Environment: DATABASE_URL or DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD or PG*, BLUESKY_BASE_URL,
MAX_WORKERS, TIME_RANGE_DAYS, LOG_LEVEL, DS_BIN_DIR (where the ds-* programs are),
DS_LOCK_FILE (the local run lock, default /tmp/dopplersky-snapshot.lock; with --shard K/N,
.shard-K-of-N is added before .lock), METRICS_FILE, HEALTH_ACTOR (the account --health-check asks
the API about, default bsky.app).
Exit codes: 0 completed, 1 failed, 2 usage, 3 partial (some users failed, or --verify found
problems), 4 another run holds the lock.
TXT
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${DS_BIN_DIR:-}
if [ -z "$bin" ]; then
  # Installed (make install): the programs sit beside this script as PREFIX/bin/dopplersky-snapshot.
  if [ -x "$here/ds-load" ]; then bin=$here
  elif [ -x "$here/../build/bin/ds-load" ]; then bin="$here/../build/bin"; else bin=$(dirname "$(command -v ds-load || echo /usr/local/bin/ds-load)"); fi
fi

select_args=() common=() save_dir="" health=0 shard="" metrics_file=${METRICS_FILE:-} verify=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all|--simple-query) select_args+=(--all) ;;
    --did) [ $# -ge 2 ] || { echo "snapshot.sh: --did needs a DID" >&2; exit 2; }; select_args+=(--did "$2"); shift ;;
    --config) [ $# -ge 2 ] || { echo "snapshot.sh: --config needs a file" >&2; exit 2; }; common+=(--config "$2"); shift ;;
    --save-dir) [ $# -ge 2 ] || { echo "snapshot.sh: --save-dir needs a directory" >&2; exit 2; }; save_dir=$2; shift ;;
    --verbose|-v) common+=(--verbose) ;;
    --quiet|-q) common+=(--quiet) ;;
    --shard) [ $# -ge 2 ] && [[ $2 =~ ^(0|[1-9][0-9]{0,3})/[1-9][0-9]{0,3}$ ]] && (( ${2%/*} < ${2#*/} )) \
               || { echo "snapshot.sh: --shard needs K/N (0 <= K < N)" >&2; exit 2; }; shard=$2; shift ;;
    --metrics-file) [ $# -ge 2 ] || { echo "snapshot.sh: --metrics-file needs a path" >&2; exit 2; }; metrics_file=$2; shift ;;
    --health-check|--health) health=1 ;;
    --verify) verify=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "snapshot.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

programs=(ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load)
[ $verify = 1 ] && programs+=(ds-verify)
for p in "${programs[@]}"; do
  [ -x "$bin/$p" ] || { echo "snapshot.sh: $bin/$p not found: run 'make' first (or set DS_BIN_DIR)" >&2; exit 1; }
done

if [ $health = 1 ]; then
  "$bin/ds-select-users" "${common[@]}" --health || exit $?
  "$bin/ds-fetch-profiles" "${common[@]}" --health ${HEALTH_ACTOR:+--health-actor "$HEALTH_ACTOR"} || exit $?
  echo "health: database and API OK" >&2
  exit 0
fi

# A local lock stops cron overlap before any API request is spent; ds-load also holds a database
# lock, which covers runs on different machines.
lock=${DS_LOCK_FILE:-/tmp/dopplersky-snapshot.lock}
# Shards of one run share a host under snapshot-sharded.sh: each needs a lock file of its own.
[ -n "$shard" ] && lock="${lock%.lock}.shard-${shard%/*}-of-${shard#*/}.lock"
load_args=()
# ds-load learns the shard from the stream (ds-select-users' selection record, its first line).
[ -n "$shard" ] && select_args+=(--shard "$shard")
[ -n "$metrics_file" ] && load_args+=(--metrics-file "$metrics_file")
exec 9>"$lock" || { echo "snapshot.sh: cannot open lock file $lock" >&2; exit 1; }
if ! flock -n 9; then
  echo "snapshot.sh: another snapshot run holds $lock; not starting (exit 4)" >&2
  exit 4
fi

save() {  # save NAME: copy the stream to the save dir when one was asked for
  if [ -n "$save_dir" ]; then tee "$save_dir/$1"; else cat; fi
}
if [ -n "$save_dir" ]; then mkdir -p "$save_dir" || exit 1; fi

# The five stages share this stderr: on a terminal their `\r` status lines would overwrite each
# other, so each writes whole progress lines instead (every 10 s here unless set).
if [ -t 2 ] && [ -z "${PROGRESS:-}" ]; then export PROGRESS=log PROGRESS_INTERVAL_S=${PROGRESS_INTERVAL_S:-10}; fi

started=$(date +%s)
"$bin/ds-select-users" "${common[@]}" "${select_args[@]}" | save 1-users.ndjson \
  | "$bin/ds-fetch-profiles" "${common[@]}" | save 2-profiles.ndjson \
  | "$bin/ds-fetch-feeds" "${common[@]}" | save 3-feeds.ndjson \
  | "$bin/ds-aggregate" "${common[@]}" | save 4-aggregate.ndjson \
  | "$bin/ds-load" "${common[@]}" "${load_args[@]}" >/dev/null
codes=("${PIPESTATUS[@]}")
names=(ds-select-users - ds-fetch-profiles - ds-fetch-feeds - ds-aggregate - ds-load)

# ds-load's code says how the run was recorded; a stage that failed outright is reported too.
load_rc=${codes[${#codes[@]}-1]}
rc=$load_rc
for i in "${!codes[@]}"; do
  c=${codes[$i]}
  [ "${names[$i]}" = - ] && continue
  if [ "$c" != 0 ] && [ "$c" != 3 ] && [ "${names[$i]}" != ds-load ]; then
    echo "snapshot.sh: ${names[$i]} exited with $c" >&2
    [ "$rc" = 0 ] || [ "$rc" = 3 ] && rc=1
  fi
done
# --verify: the database after a run that finished, audited read-only; its lines go to stderr with
# the stages' logs (and so to the journal or the cron log). Problems it finds make a clean run 3.
if [ $verify = 1 ]; then
  if [ "$rc" = 0 ] || [ "$rc" = 3 ]; then
    vrc=0
    "$bin/ds-verify" "${common[@]}" >&2 || vrc=$?
    case "$vrc" in
      0) ;;
      3) echo "snapshot.sh: ds-verify found problems in the database (exit 3)" >&2; rc=3 ;;
      *) echo "snapshot.sh: ds-verify could not check the database (exit $vrc)" >&2; rc=1 ;;
    esac
  else
    echo "snapshot.sh: the run did not finish (exit $rc); ds-verify not run" >&2
  fi
fi
echo "snapshot.sh: finished in $(( $(date +%s) - started ))s with exit code $rc" >&2
exit "$rc"
