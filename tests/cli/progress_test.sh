#!/usr/bin/env bash
# Watching a run: fetch-profiles, fetch-feeds, aggregate and load log "progress: ..." lines every
# PROGRESS_INTERVAL_S without a terminal, draw a status line on one, stay silent with --quiet, and
# never change stdout. Starts the fake AppView and a private PostgreSQL (for ds-load).
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start progress_test
rc_ok() { [ "$rc" = 0 ] || [ "$rc" = 3 ]; }  # 3: some feeds of the fake dataset fail or are gone

start_fake fake --day 1 --seed 3 --users 30 --posts-scale 0.05 --latency-ms 20
start_cluster
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0 \
  DS_NOW=2026-11-02T06:00:00Z LOG_LEVEL=info PROGRESS_INTERVAL_S=0.2
unset LOG_FORMAT
migrate

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
  err=$work/$stage.err
  check --show "$err" "$stage: exit $rc (0 or 3)" rc_ok
  check --show "$err" "$stage: a 'progress:' line with users > 0 on stderr" \
    grep -qE " $stage info: progress: $stage: users [1-9]" "$err"
  case $stage in ds-fetch-*)
    check --show "$err" "$stage: a progress line with requests > 0" \
      grep -qE "progress: $stage: .*, requests [1-9][0-9]* \(" "$err" ;;
  esac
  case $stage in ds-fetch-feeds|ds-aggregate)
    check --show "$err" "$stage: a progress line with posts > 0" \
      grep -qE "progress: $stage: users [0-9]+, posts [1-9]" "$err" ;;
  esac
  n=$(grep -cE "$(summary_re "$stage")" "$err")
  check --show "$err" "$stage: $n summary lines, want 1" [ "$n" = 1 ]

  run "$stage" "$input" "$stage-quiet" --quiet
  check "$stage --quiet: exit $rc (0 or 3)" rc_ok
  expect_no_grep progress "$work/$stage-quiet.err" "$stage --quiet: progress on stderr"
  check "$stage: stdout is the --quiet run's" \
    cmp -s <(stable "$work/$stage.out") <(stable "$work/$stage-quiet.out")
done
check "ds-fetch-feeds: stdout is not empty" [ -s "$work/ds-fetch-feeds.out" ]  # else the comparisons prove nothing

# PROGRESS_INTERVAL_S=0 turns the lines off; JSON logs get them as JSON objects.
PROGRESS_INTERVAL_S=0 run ds-aggregate "$work/feeds.ndjson" off
expect_no_grep progress: "$work/off.err" "PROGRESS_INTERVAL_S=0: progress lines"
LOG_FORMAT=json run ds-aggregate "$work/feeds.ndjson" json
check --show "$work/json.err" "LOG_FORMAT=json: one JSON object per line" jq -e . "$work/json.err" >/dev/null
check --show "$work/json.err" "LOG_FORMAT=json: a progress object" \
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
  check --show "$work/tty.log" "terminal: exit $rc (0 or 3)" rc_ok
  check --show "$work/tty.log" "terminal: a status line with users and requests" \
    grep -qaE $'\r\e\\[Kds-fetch-feeds: users [0-9]+.*requests [1-9]' "$work/tty.log"
  check --show "$work/tty.log" "terminal: the summary line on a cleared line" \
    grep -qaE $'\r\e\\[K[0-9]{4}-[0-9]{2}-[0-9]{2}T[^\r]* ds-fetch-feeds info: done: ' "$work/tty.log"
  check "terminal: no progress log lines on a terminal" bash -c "! grep -qa 'info: progress:' '$work/tty.log'"
  check "terminal: stdout is the --quiet run's" \
    cmp -s <(stable "$work/tty.out") <(stable "$work/ds-fetch-feeds-quiet.out")

  # PROGRESS=log (what pipelines/snapshot.sh sets on a terminal): whole log lines, no redrawn line.
  slow "$work/profiles.ndjson" >"$work/fifo" &
  feeder=$!
  PROGRESS=log script -qefc "'$bin/ds-fetch-feeds' <'$work/fifo' >/dev/null" /dev/null </dev/null >"$work/tty-log.log" 2>&1
  wait "$feeder"
  check --show "$work/tty-log.log" "PROGRESS=log on a terminal: a progress log line" \
    grep -qa 'info: progress: ds-fetch-feeds: users [1-9]' "$work/tty-log.log"
  check --show "$work/tty-log.log" "PROGRESS=log on a terminal: no status line redrawn" \
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
  check --show "$work/tty-int.log" "terminal, SIGINT: exit $rc, want 130" [ "$rc" = 130 ]
  check --show "$work/tty-int.log" "terminal, SIGINT: the stop message on a cleared line" \
    grep -qaE $'users [0-9]+[^\r]*\r\e\\[Kds-fetch-feeds: interrupted by SIGINT' "$work/tty-int.log"
else
  echo "progress_test: script(1) not found; terminal mode left to tests/unit/progress_test.cpp" >&2
fi

finish
