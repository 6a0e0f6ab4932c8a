#!/usr/bin/env bash
# Watching a run: fetch-profiles, fetch-feeds, aggregate and load log "progress: ..." lines every
# PROGRESS_INTERVAL_S without a terminal, draw a status line on one, stay silent with --quiet, and
# never change stdout. Starts the fake AppView and a private PostgreSQL (for ds-load).
set -uo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
work=$(mktemp -d /tmp/ds-progress.XXXXXX)
chmod 755 "$work"  # the server runs as postgres under root and must reach its data directory
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
  "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" >/dev/null 2>&1
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
die() { echo "FAIL: $*" >&2; exit 1; }
check() {  # check WHAT COMMAND...
  local what=$1; shift
  if "$@"; then ok; else bad "$what"; fi
}
rc_ok() { [ "$rc" = 0 ] || [ "$rc" = 3 ]; }  # 3: some feeds of the fake dataset fail or are gone

"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --day 1 --seed 3 --users 30 --posts-scale 0.05 \
  --latency-ms 20 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || die "fake AppView did not start: $(cat "$work/fake.log")"
url=$("$src/tests/scripts/pg-cluster.sh" start "$work/pg") || die "PostgreSQL did not start"
export DATABASE_URL=$url BLUESKY_BASE_URL="http://127.0.0.1:$(cat "$work/port")" RATE_LIMIT_RPS=0 \
  DS_NOW=2026-11-02T06:00:00Z LOG_LEVEL=info PROGRESS_INTERVAL_S=0.2
unset LOG_FORMAT
"$bin/ds-migrate" >/dev/null 2>"$work/migrate.log" || die "ds-migrate: $(cat "$work/migrate.log")"

# Every stage's input, made once from the quiet stages before it.
"$bin/ds-fake-appview" user-records --day 1 --seed 3 --users 30 >"$work/users.ndjson"
"$bin/ds-fetch-profiles" --quiet <"$work/users.ndjson" >"$work/profiles.ndjson" || die "ds-fetch-profiles failed"
"$bin/ds-fetch-feeds" --quiet <"$work/profiles.ndjson" >"$work/feeds.ndjson" || die "ds-fetch-feeds failed"
"$bin/ds-aggregate" --quiet <"$work/feeds.ndjson" >"$work/aggregate.ndjson" || die "ds-aggregate failed"
[ "$(grep -c '"type":"user"' "$work/feeds.ndjson")" -ge 20 ] || die "too few users in $work/feeds.ndjson"

# Half the input, a pause longer than the interval, the rest: every stage runs past the interval
# with users done before it, and a record arriving after it, whatever the machine's speed.
slow() {  # slow FILE
  local n; n=$(wc -l <"$1")
  head -n $((n / 2)) "$1"; sleep 0.6; tail -n +$((n / 2 + 1)) "$1"
}
# What may differ between two runs of the same input: time, and connections (libcurl's timing).
stable() { sed -E 's/"(elapsed_s|connections)":[0-9.eE+-]+/"\1":0/g' "$1"; }

# run STAGE INPUT NAME [FLAGS...]: stdout in NAME.out, stderr in NAME.err, exit code in rc
run() {
  local stage=$1 input=$2 name=$3; shift 3
  slow "$input" | "$bin/$stage" "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=${PIPESTATUS[1]}
}
summary_re() {  # the one end-of-run summary line of each stage
  case $1 in ds-load) echo ' ds-load (info|warning): run [0-9]+ (completed|partial|failed): ' ;;
             *) echo " $1 info: done: " ;; esac
}

for stage in ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load; do
  case $stage in
    ds-fetch-profiles) input=$work/users.ndjson ;;
    ds-fetch-feeds) input=$work/profiles.ndjson ;;
    ds-aggregate) input=$work/feeds.ndjson ;;
    ds-load) input=$work/aggregate.ndjson ;;
  esac
  run "$stage" "$input" "$stage"
  check "$stage: exit $rc: $(tail -3 "$work/$stage.err")" rc_ok
  check "$stage: no 'progress:' line with users > 0 on stderr: $(head -c 600 "$work/$stage.err")" \
    grep -qE " $stage info: progress: $stage: users [1-9]" "$work/$stage.err"
  case $stage in ds-fetch-*)
    check "$stage: no progress line with requests > 0: $(grep progress: "$work/$stage.err")" \
      grep -qE "progress: $stage: .*, requests [1-9][0-9]* \(" "$work/$stage.err" ;;
  esac
  case $stage in ds-fetch-feeds|ds-aggregate)
    check "$stage: no progress line with posts > 0: $(grep progress: "$work/$stage.err")" \
      grep -qE "progress: $stage: users [0-9]+, posts [1-9]" "$work/$stage.err" ;;
  esac
  n=$(grep -cE "$(summary_re "$stage")" "$work/$stage.err")
  check "$stage: $n summary lines, want 1: $(tail -3 "$work/$stage.err")" [ "$n" = 1 ]

  run "$stage" "$input" "$stage-quiet" --quiet
  check "$stage --quiet: exit $rc" rc_ok
  check "$stage --quiet: progress on stderr: $(grep progress "$work/$stage-quiet.err")" \
    bash -c "! grep -q progress '$work/$stage-quiet.err'"
  check "$stage: stdout differs from the --quiet run's" \
    cmp -s <(stable "$work/$stage.out") <(stable "$work/$stage-quiet.out")
done
check "ds-fetch-feeds: stdout is empty" [ -s "$work/ds-fetch-feeds.out" ]  # else the comparisons prove nothing

# PROGRESS_INTERVAL_S=0 turns the lines off; JSON logs get them as JSON objects.
PROGRESS_INTERVAL_S=0 run ds-aggregate "$work/feeds.ndjson" off
check "PROGRESS_INTERVAL_S=0: progress lines: $(grep progress: "$work/off.err")" bash -c "! grep -q progress: '$work/off.err'"
LOG_FORMAT=json run ds-aggregate "$work/feeds.ndjson" json
check "LOG_FORMAT=json: not one JSON object per line: $(head -c 400 "$work/json.err")" jq -e . "$work/json.err" >/dev/null
check "LOG_FORMAT=json: no progress object: $(head -c 400 "$work/json.err")" \
  jq -se 'any(.[]; .level == "info" and (.msg | test("^progress: ds-aggregate: users [1-9]")))' "$work/json.err" >/dev/null

# On a terminal (script(1) gives the stage one): a status line redrawn in place, cleared before the
# summary line, and stdout still the data alone.
if command -v script >/dev/null 2>&1; then
  mkfifo "$work/fifo"
  slow "$work/profiles.ndjson" >"$work/fifo" &
  feeder=$!
  script -qefc "'$bin/ds-fetch-feeds' <'$work/fifo' >'$work/tty.out'" /dev/null </dev/null >"$work/tty.log" 2>&1
  rc=$?
  wait "$feeder"
  check "terminal: exit $rc: $(tail -c 400 "$work/tty.log")" rc_ok
  check "terminal: no status line with users and requests: $(head -c 400 "$work/tty.log" | cat -v)" \
    grep -qaE $'\r\e\\[Kds-fetch-feeds: users [0-9]+.*requests [1-9]' "$work/tty.log"
  check "terminal: summary line not on a cleared line: $(tail -c 400 "$work/tty.log" | cat -v)" \
    grep -qaE $'\r\e\\[K[0-9]{4}-[0-9]{2}-[0-9]{2}T[^\r]* ds-fetch-feeds info: done: ' "$work/tty.log"
  check "terminal: progress log lines on a terminal" bash -c "! grep -qa 'info: progress:' '$work/tty.log'"
  check "terminal: stdout differs from the --quiet run's" \
    cmp -s <(stable "$work/tty.out") <(stable "$work/ds-fetch-feeds-quiet.out")

  # PROGRESS=log (what pipelines/snapshot.sh sets on a terminal): whole log lines, no redrawn line.
  slow "$work/profiles.ndjson" >"$work/fifo" &
  feeder=$!
  PROGRESS=log script -qefc "'$bin/ds-fetch-feeds' <'$work/fifo' >/dev/null" /dev/null </dev/null >"$work/tty-log.log" 2>&1
  wait "$feeder"
  check "PROGRESS=log on a terminal: no progress log line: $(head -c 400 "$work/tty-log.log" | cat -v)" \
    grep -qa 'info: progress: ds-fetch-feeds: users [1-9]' "$work/tty-log.log"
  check "PROGRESS=log on a terminal: a status line was redrawn: $(head -c 400 "$work/tty-log.log" | cat -v)" \
    bash -c "! grep -qa \$'\\e\\[K' '$work/tty-log.log'"

  # Ctrl-C while the status line is shown: the stop message takes the line back first, instead
  # of landing at the end of it. The input stays open (head half, then a wait) so the stage is
  # mid-run when the signal comes.
  { head -n "$(( $(wc -l <"$work/profiles.ndjson") / 2 ))" "$work/profiles.ndjson"; sleep 5; } >"$work/fifo" &
  feeder=$!
  script -qefc "sh -c 'echo \$\$ >\"$work/stage.pid\"; exec \"$bin/ds-fetch-feeds\" <\"$work/fifo\" >/dev/null'" /dev/null \
    </dev/null >"$work/tty-int.log" 2>&1 &
  runner=$!
  for _ in $(seq 50); do grep -qa $'\e\\[Kds-fetch-feeds: users' "$work/tty-int.log" 2>/dev/null && break; sleep 0.1; done
  kill -INT "$(cat "$work/stage.pid")"
  wait "$runner"
  rc=$?
  kill "$feeder" 2>/dev/null; wait "$feeder" 2>/dev/null
  check "terminal, SIGINT: exit $rc, want 130: $(tail -c 300 "$work/tty-int.log" | cat -v)" [ "$rc" = 130 ]
  check "terminal, SIGINT: the stop message is not on a cleared line: $(tail -c 300 "$work/tty-int.log" | cat -v)" \
    grep -qaE $'users [0-9]+[^\r]*\r\e\\[Kds-fetch-feeds: interrupted by SIGINT' "$work/tty-int.log"
else
  echo "progress_test: script(1) not found; terminal mode left to tests/unit/progress_test.cpp" >&2
fi

echo "progress_test: $pass passed, $fail failed" >&2
[ "$fail" = 0 ]
