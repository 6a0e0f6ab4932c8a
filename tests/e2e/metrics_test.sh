#!/usr/bin/env bash
# The metrics file of real runs (private PostgreSQL + fake AppView): valid Prometheus text format
# (checked by the small parser below), counters equal to the saved `end` records, run figures equal
# to snapshot_logs, and the last success kept through a failed run and through a database outage.
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start metrics
seed=5 users=24

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
parse_to() { parse "$1" >"$2"; }  # parse_to FILE TSV
# value FILE SERIES: the sample's value, or "absent". ENVIRON, since awk -v would unescape \".
value() { S=$2 awk -F'\t' '$1 == ENVIRON["S"] { print $2; found = 1 } END { if (!found) print "absent" }' "$1"; }
same_number() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "absent" && b != "" && d < 1e-6 && d > -1e-6) }'; }

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

start_cluster
start_fake fake --day 1 --seed $seed --users $users
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0 LOG_LEVEL=warning
export DS_LOCK_FILE=$work/snapshot.lock DS_NOW=2026-11-02T06:00:00Z
migrate
seed_users
mkdir -p "$work/textfile"
prom=$work/textfile/dopplersky.prom

step "a completed run: the file against the end records and the run log"
"$src/pipelines/snapshot.sh" --all --save-dir "$work/run" --metrics-file "$prom" 2>"$work/run.log" \
  || { cat "$work/run.log" >&2; die "the pipeline exited $?"; }
check "the metrics file parses as exposition format" parse_to "$prom" "$work/s1.tsv"
check "nothing but the .prom file in the textfile directory (temp file renamed)" eval '[ "$(ls -A "$work/textfile")" = dopplersky.prom ]'

jq -c 'select(.type == "end")' "$work/run/4-aggregate.ndjson" >"$work/ends"
check "the saved stream ends with the 4 upstream end records" eval '[ "$(wc -l <"$work/ends")" = 4 ]'
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
check "every end-record counter ($compared compared) equals its metric" eval '[ $mismatch = 0 ] && [ $compared -gt 60 ]'
want=$(jq -s -r 'map(select(.stage == "ds-select-users"))[0].counters.users' "$work/ends")
check "users selected: $want" eval '[ "$(value "$work/s1.tsv" "dopplersky_stage_users_selected{stage=\"ds-select-users\",shard=\"\"}")" = "$want" ] && [ "$(value "$work/s1.tsv" "dopplersky_run_users_selected{shard=\"\"}")" = "$want" ] && [ "$want" -gt 10 ]'
want=$(jq -s '[.[].counters.requests // 0] | add' "$work/ends")
check "run API requests = sum of the stages' requests ($want)" eval '[ "$(value "$work/s1.tsv" "dopplersky_run_api_requests{shard=\"\"}")" = "$want" ]'

IFS='|' read -r run_id total_users completed_epoch duration < <(psql_q -d "$url" -c \
  "SELECT id, total_users, extract(epoch FROM time_completed), duration FROM snapshot_logs WHERE status = 'completed' ORDER BY id DESC LIMIT 1")
check "run status completed" eval '[ "$(value "$work/s1.tsv" "dopplersky_run_status{shard=\"\",status=\"completed\"}")" = 1 ] && [ "$(value "$work/s1.tsv" "dopplersky_run_status{shard=\"\",status=\"failed\"}")" = 0 ]'
check "run id = snapshot_logs.id ($run_id)" eval '[ "$(value "$work/s1.tsv" "dopplersky_run_id{shard=\"\"}")" = "$run_id" ]'
check "users snapshotted = snapshot_logs.total_users ($total_users)" eval '[ "$(value "$work/s1.tsv" "dopplersky_run_users_snapshotted{shard=\"\"}")" = "$total_users" ] && [ "$total_users" -gt 0 ]'
check "run duration = snapshot_logs.duration (the same figure, up to its float4 rounding)" eval 'awk -v a="$(value "$work/s1.tsv" "dopplersky_run_duration_seconds{shard=\"\"}")" -v b="$duration" "BEGIN { exit !(a - b < 0.001 && b - a < 0.001) }"'
last_success=$(value "$work/s1.tsv" 'dopplersky_last_success_timestamp_seconds{shard=""}')
check "last success = time_completed of the run ($completed_epoch)" eval 'same_number "$last_success" "$completed_epoch"'
check "exit code 0" eval '[ "$(value "$work/s1.tsv" "dopplersky_run_exit_code{shard=\"\"}")" = 0 ]'
check "ds-load's own figures: posts loaded = posts in the stream" eval '[ "$(value "$work/s1.tsv" "dopplersky_run_posts_loaded{shard=\"\"}")" = "$(grep -c "\"type\":\"post\"" "$work/run/4-aggregate.ndjson")" ]'

step "a failed run (the stream stops before the end records): failed, last success kept"
grep -v '"type":"end"' "$work/run/4-aggregate.ndjson" | head -200 >"$work/cut.ndjson"
DS_NOW=2026-11-02T07:00:00Z "$bin/ds-load" --metrics-file "$prom" <"$work/cut.ndjson" >/dev/null 2>"$work/load.log"
expect "ds-load's exit code" $? 1
check "the failed run's file parses" parse_to "$prom" "$work/s2.tsv"
check "status failed, exit code 1" eval '[ "$(value "$work/s2.tsv" "dopplersky_run_status{shard=\"\",status=\"failed\"}")" = 1 ] && [ "$(value "$work/s2.tsv" "dopplersky_run_exit_code{shard=\"\"}")" = 1 ]'
check "every stage shown as not finished" eval '[ "$(awk -F"\t" "\$1 ~ /^dopplersky_stage_finished[{]/ && \$2 == 0" "$work/s2.tsv" | wc -l)" = 5 ]'
check "last success still the completed run's" eval '[ "$(value "$work/s2.tsv" "dopplersky_last_success_timestamp_seconds{shard=\"\"}")" = "$last_success" ]'
check "a new run id" eval '[ "$(value "$work/s2.tsv" "dopplersky_run_id{shard=\"\"}")" -gt "$run_id" ]'

step "METRICS_FILE from the environment, and a shard label that needs escaping"
METRICS_FILE=$work/textfile/env.prom "$bin/ds-load" --shard 'a"b\c' <"$work/run/4-aggregate.ndjson" >/dev/null 2>"$work/load2.log"
expect "ds-load --shard 'a\"b\\c': exit code" $? 0
check "METRICS_FILE was written and parses" parse_to "$work/textfile/env.prom" "$work/s3.tsv"
check "the label value is escaped" eval '[ "$(value "$work/s3.tsv" "dopplersky_run_status{shard=\"a\\\"b\\\\c\",status=\"completed\"}")" = 1 ]'
check "the shard has its own last success (this run)" eval '[ "$(value "$work/s3.tsv" "dopplersky_last_success_timestamp_seconds{shard=\"a\\\"b\\\\c\"}")" != absent ]'

step "the database is down: the run fails, the file keeps the last success from the previous file"
"$src/tests/scripts/pg-cluster.sh" stop "$work/pg"
DB_CONNECT_TIMEOUT=3 "$bin/ds-load" --metrics-file "$prom" </dev/null >/dev/null 2>"$work/load3.log"
expect "ds-load's exit code" $? 1
check "the outage's file parses" parse_to "$prom" "$work/s4.tsv"
check "status failed, no run id" eval '[ "$(value "$work/s4.tsv" "dopplersky_run_status{shard=\"\",status=\"failed\"}")" = 1 ] && [ "$(value "$work/s4.tsv" "dopplersky_run_id{shard=\"\"}")" = 0 ]'
check "last success carried over" eval '[ "$(value "$work/s4.tsv" "dopplersky_last_success_timestamp_seconds{shard=\"\"}")" = "$last_success" ]'
check "nothing but .prom files in the textfile directory" eval '[ "$(ls -A "$work/textfile" | grep -vc "\.prom$")" = 0 ]'

finish
