#!/usr/bin/env bash
# The metrics file of real runs (private PostgreSQL + fake AppView): valid Prometheus text format
# (checked by the small parser below), counters equal to the saved `end` records, run figures equal
# to snapshot_logs, and the last success kept through a failed run and through a database outage.
set -uo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
seed=5 users=24
work=$(mktemp -d /tmp/ds-metrics.XXXXXX)
chmod 755 "$work"  # the server runs as postgres under root and must reach its data directory
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
  "$src/tests/scripts/pg-cluster.sh" stop "$work/pg" || true
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*" >&2; }
bad() { failed=$((failed + 1)); echo "FAIL $*" >&2; }
die() { echo "FAIL: $*" >&2; echo "metrics: $passed passed, $((failed + 1)) failed"; exit 1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; return 1; fi; }

# parse FILE > samples.tsv: validates the text exposition format line by line (HELP, then TYPE,
# then the family's samples, contiguous; metric and label names; label values with only \\ \" \n
# escapes; numeric values; no series twice) and prints "series<TAB>value" per sample.
# Exit 1 with the offending line on stderr.
parse() {
  awk '
    function fail(why) { printf "line %d: %s: %s\n", NR, why, $0 > "/dev/stderr"; bad = 1; exit 1 }
    /^# HELP / {
      n = $3
      if (n !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*$/) fail("bad metric name")
      if (n in helped) fail("family appears twice")
      helped[n] = 1
      if (cur != "") done[cur] = 1
      cur = n; next
    }
    /^# TYPE / {
      if (NF != 4 || $3 != cur || (cur in typed)) fail("TYPE is not right after its HELP")
      if ($4 !~ /^(gauge|counter|untyped|summary|histogram)$/) fail("unknown type")
      typed[cur] = 1; next
    }
    /^#/ { fail("unknown comment line") }
    {
      line = $0
      if (!match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) fail("no metric name")
      name = substr(line, 1, RLENGTH); rest = substr(line, RLENGTH + 1)
      if (name != cur || !(name in typed)) fail("sample outside its family")
      series = name
      if (substr(rest, 1, 1) == "{") {
        i = 2
        while (1) {
          tail = substr(rest, i)
          if (!match(tail, /^[a-zA-Z_][a-zA-Z0-9_]*="/)) fail("bad label name")
          i += RLENGTH
          while (1) {  # the value, up to an unescaped quote
            c = substr(rest, i, 1)
            if (c == "") fail("unterminated label value")
            if (c == "\\") {
              d = substr(rest, i + 1, 1)
              if (d != "\\" && d != "\"" && d != "n") fail("bad escape in label value")
              i += 2; continue
            }
            i++
            if (c == "\"") break
          }
          c = substr(rest, i, 1); i++
          if (c == "}") break
          if (c != ",") fail("expected , or } after a label")
        }
        series = name substr(rest, 1, i - 1)
        rest = substr(rest, i)
      }
      if (substr(rest, 1, 1) != " ") fail("no space before the value")
      value = substr(rest, 2)
      if (value !~ /^-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?$/ && value != "NaN" && value != "+Inf" && value != "-Inf")
        fail("bad value")
      if (series in seen) fail("series appears twice")
      seen[series] = 1
      printf "%s\t%s\n", series, value
    }
    END { if (!bad && NR == 0) { print "empty file" > "/dev/stderr"; exit 1 } }
  ' "$1"
}
# value FILE SERIES: the sample's value, or "absent". ENVIRON, since awk -v would unescape \".
value() { S=$2 awk -F'\t' '$1 == ENVIRON["S"] { print $2; found = 1 } END { if (!found) print "absent" }' "$1"; }
same_number() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "absent" && b != "" && d < 1e-6 && d > -1e-6) }'; }

step() { echo "== $*" >&2; }

step "the parser rejects what is not exposition format"
printf '# HELP a x\n# TYPE a gauge\na{l="v"} 1\n' >"$work/good.prom"
parse "$work/good.prom" >/dev/null && ok "parser accepts a valid file" || bad "parser rejects a valid file"
n=0
for broken in 'a{l="v} 1' 'a{l="v\q"} 1' 'a 1 2' 'a{1l="v"} 1' 'b 1' 'a{l="v"}1' 'a{l="v",} x' 'a{l="v"} 1\na{l="v"} 2' \
              '# TYPE a gauge' '# HELP b x\nb 1'; do
  printf "# HELP a x\n# TYPE a gauge\n$broken\n" >"$work/bad.prom"
  parse "$work/bad.prom" >/dev/null 2>&1 && { bad "parser accepted: $broken"; continue; }
  n=$((n + 1))
done
[ $n = 10 ] && ok "parser rejects 10 kinds of broken lines"

url=$("$src/tests/scripts/pg-cluster.sh" start "$work/pg") || die "cannot start PostgreSQL"
. "$work/pg/env"
psql_q() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt "$@"; }
"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --day 1 --seed $seed --users $users 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || die "fake AppView did not start: $(cat "$work/fake.log")"
export BLUESKY_BASE_URL="http://127.0.0.1:$(cat "$work/port")" DATABASE_URL="$url" RATE_LIMIT_RPS=0 LOG_LEVEL=warning
export DS_LOCK_FILE=$work/snapshot.lock DS_NOW=2026-11-02T06:00:00Z
"$bin/ds-migrate" >/dev/null 2>"$work/migrate.log" || die "ds-migrate: $(cat "$work/migrate.log")"
"$bin/ds-fake-appview" --day 1 --seed $seed --users $users seed-sql | psql_q -d "$url" || die "seeding"
mkdir -p "$work/textfile"
prom=$work/textfile/dopplersky.prom

step "a completed run: the file against the end records and the run log"
"$src/pipelines/snapshot.sh" --all --save-dir "$work/run" --metrics-file "$prom" 2>"$work/run.log" \
  || { cat "$work/run.log" >&2; die "the pipeline exited $?"; }
parse "$prom" >"$work/s1.tsv" && ok "the metrics file parses as exposition format" || bad "the metrics file does not parse"
check "nothing but the .prom file in the textfile directory (temp file renamed)" '[ "$(ls -A "$work/textfile")" = dopplersky.prom ]'

jq -c 'select(.type == "end")' "$work/run/4-aggregate.ndjson" >"$work/ends"
check "the saved stream ends with the 4 upstream end records" '[ "$(wc -l <"$work/ends")" = 4 ]'
mismatch=0 compared=0
while read -r e; do
  stage=$(jq -r .stage <<<"$e")
  while IFS=$'\t' read -r counter want; do
    got=$(value "$work/s1.tsv" "dopplersky_stage_counter{stage=\"$stage\",shard=\"\",counter=\"$counter\"}")
    compared=$((compared + 1))
    [ "$got" = "$want" ] || { mismatch=1; echo "     $stage $counter: end record $want, metrics $got" >&2; }
  done < <(jq -r '.counters | to_entries[] | "\(.key)\t\(.value)"' <<<"$e")
  # The named metrics show the same counters.
  for pair in users_processed:users users_gone:gone users_failed:failed users_capped:capped posts:posts \
              requests:requests retries:retries http_429_responses:http_429 bytes:bytes; do
    metric=${pair%%:*} counter=${pair#*:}
    want=$(jq -r --arg c "$counter" '.counters[$c] // "absent"' <<<"$e")
    got=$(value "$work/s1.tsv" "dopplersky_stage_$metric{stage=\"$stage\",shard=\"\"}")
    compared=$((compared + 1))
    [ "$got" = "$want" ] || { mismatch=1; echo "     $stage $metric: end record $want, metrics $got" >&2; }
  done
  want=$(jq -r .elapsed_s <<<"$e")
  got=$(value "$work/s1.tsv" "dopplersky_stage_duration_seconds{stage=\"$stage\",shard=\"\"}")
  same_number "$got" "$want" || { mismatch=1; echo "     $stage duration: end record $want, metrics $got" >&2; }
  got=$(value "$work/s1.tsv" "dopplersky_stage_finished{stage=\"$stage\",shard=\"\"}")
  [ "$got" = 1 ] || { mismatch=1; echo "     $stage finished: $got" >&2; }
done <"$work/ends"
check "every end-record counter ($compared compared) equals its metric" '[ $mismatch = 0 ] && [ $compared -gt 60 ]'
want=$(jq -s -r 'map(select(.stage == "ds-select-users"))[0].counters.users' "$work/ends")
check "users selected: $want" '[ "$(value "$work/s1.tsv" "dopplersky_stage_users_selected{stage=\"ds-select-users\",shard=\"\"}")" = "$want" ] && [ "$(value "$work/s1.tsv" "dopplersky_run_users_selected{shard=\"\"}")" = "$want" ] && [ "$want" -gt 10 ]'
want=$(jq -s '[.[].counters.requests // 0] | add' "$work/ends")
check "run API requests = sum of the stages' requests ($want)" '[ "$(value "$work/s1.tsv" "dopplersky_run_api_requests{shard=\"\"}")" = "$want" ]'

IFS='|' read -r run_id total_users completed_epoch duration < <(psql_q -d "$url" -c \
  "SELECT id, total_users, extract(epoch FROM time_completed), duration FROM snapshot_logs WHERE status = 'completed' ORDER BY id DESC LIMIT 1")
check "run status completed" '[ "$(value "$work/s1.tsv" "dopplersky_run_status{shard=\"\",status=\"completed\"}")" = 1 ] && [ "$(value "$work/s1.tsv" "dopplersky_run_status{shard=\"\",status=\"failed\"}")" = 0 ]'
check "run id = snapshot_logs.id ($run_id)" '[ "$(value "$work/s1.tsv" "dopplersky_run_id{shard=\"\"}")" = "$run_id" ]'
check "users snapshotted = snapshot_logs.total_users ($total_users)" '[ "$(value "$work/s1.tsv" "dopplersky_run_users_snapshotted{shard=\"\"}")" = "$total_users" ] && [ "$total_users" -gt 0 ]'
check "run duration = snapshot_logs.duration (the same figure, up to its float4 rounding)" 'awk -v a="$(value "$work/s1.tsv" "dopplersky_run_duration_seconds{shard=\"\"}")" -v b="$duration" "BEGIN { exit !(a - b < 0.001 && b - a < 0.001) }"'
last_success=$(value "$work/s1.tsv" 'dopplersky_last_success_timestamp_seconds{shard=""}')
check "last success = time_completed of the run ($completed_epoch)" 'same_number "$last_success" "$completed_epoch"'
check "exit code 0" '[ "$(value "$work/s1.tsv" "dopplersky_run_exit_code{shard=\"\"}")" = 0 ]'
check "ds-load's own figures: posts loaded = posts in the stream" '[ "$(value "$work/s1.tsv" "dopplersky_run_posts_loaded{shard=\"\"}")" = "$(grep -c "\"type\":\"post\"" "$work/run/4-aggregate.ndjson")" ]'

step "a failed run (the stream stops before the end records): failed, last success kept"
grep -v '"type":"end"' "$work/run/4-aggregate.ndjson" | head -200 >"$work/cut.ndjson"
DS_NOW=2026-11-02T07:00:00Z "$bin/ds-load" --metrics-file "$prom" <"$work/cut.ndjson" >/dev/null 2>"$work/load.log"
rc=$?
check "ds-load exits 1" '[ $rc = 1 ]'
parse "$prom" >"$work/s2.tsv" && ok "the failed run's file parses" || bad "the failed run's file does not parse"
check "status failed, exit code 1" '[ "$(value "$work/s2.tsv" "dopplersky_run_status{shard=\"\",status=\"failed\"}")" = 1 ] && [ "$(value "$work/s2.tsv" "dopplersky_run_exit_code{shard=\"\"}")" = 1 ]'
check "every stage shown as not finished" '[ "$(awk -F"\t" "\$1 ~ /^dopplersky_stage_finished[{]/ && \$2 == 0" "$work/s2.tsv" | wc -l)" = 5 ]'
check "last success still the completed run's" '[ "$(value "$work/s2.tsv" "dopplersky_last_success_timestamp_seconds{shard=\"\"}")" = "$last_success" ]'
check "a new run id" '[ "$(value "$work/s2.tsv" "dopplersky_run_id{shard=\"\"}")" -gt "$run_id" ]'

step "METRICS_FILE from the environment, and a shard label that needs escaping"
METRICS_FILE=$work/textfile/env.prom "$bin/ds-load" --shard 'a"b\c' <"$work/run/4-aggregate.ndjson" >/dev/null 2>"$work/load2.log"
rc=$?
check "ds-load --shard 'a\"b\\c' completes" '[ $rc = 0 ]'
parse "$work/textfile/env.prom" >"$work/s3.tsv" && ok "METRICS_FILE was written and parses" || bad "METRICS_FILE missing or invalid"
check "the label value is escaped" '[ "$(value "$work/s3.tsv" "dopplersky_run_status{shard=\"a\\\"b\\\\c\",status=\"completed\"}")" = 1 ]'
check "the shard has its own last success (this run)" '[ "$(value "$work/s3.tsv" "dopplersky_last_success_timestamp_seconds{shard=\"a\\\"b\\\\c\"}")" != absent ]'

step "the database is down: the run fails, the file keeps the last success from the previous file"
"$src/tests/scripts/pg-cluster.sh" stop "$work/pg"
DB_CONNECT_TIMEOUT=3 "$bin/ds-load" --metrics-file "$prom" </dev/null >/dev/null 2>"$work/load3.log"
rc=$?
check "ds-load exits 1" '[ $rc = 1 ]'
parse "$prom" >"$work/s4.tsv" && ok "the outage's file parses" || bad "the outage's file does not parse"
check "status failed, no run id" '[ "$(value "$work/s4.tsv" "dopplersky_run_status{shard=\"\",status=\"failed\"}")" = 1 ] && [ "$(value "$work/s4.tsv" "dopplersky_run_id{shard=\"\"}")" = 0 ]'
check "last success carried over" '[ "$(value "$work/s4.tsv" "dopplersky_last_success_timestamp_seconds{shard=\"\"}")" = "$last_success" ]'
check "nothing but .prom files in the textfile directory" '[ "$(ls -A "$work/textfile" | grep -vc "\.prom$")" = 0 ]'

echo "metrics: $passed passed, $failed failed"
[ "$failed" = 0 ]
