#!/usr/bin/env bash
# Pipes and signals: `stage | head -1` ends quietly and promptly (also when SIGPIPE was ignored by
# whoever started us); SIGINT/SIGTERM stop ds-aggregate and the fetch stages with exit 130, leaving
# only whole JSON lines on stdout (even when stopped inside a write to a stalled reader), no end record.
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start pipe
# A stage that failed to stop ignores SIGTERM perhaps: nothing of ours may outlive the test.
on_exit() { for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null; done; }
whole_json_lines() {  # FILE: every line parses on its own, and the file ends with a newline
  [ ! -s "$1" ] && return 0
  [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] || return 1
  jq -c . "$1" >/dev/null 2>&1
}
# Waits up to SECS for PID; sets `rc` to its exit code, or 999 (and kills it) when it did not end.
wait_for() {  # PID SECS
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; rc=$?; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rc=999
}

# The fake AppView, on loopback. posts-scale 3: account 0 then has ~32,000 posts (300+ pages),
# far more than a pipeline closed after one line should ever ask for.
start_fake fake --day 1 --seed 5 --users 30 --posts-scale 3
export BLUESKY_BASE_URL=http://127.0.0.1:$port_fake RATE_LIMIT_RPS=0 LOG_LEVEL=warning DS_NOW=2026-11-02T06:00:00Z
unset LOG_FORMAT
feed_requests() { fake_stats "$port_fake" | jq '.requests.getAuthorFeed'; }

# Users for the fetch stages, as ds-select-users + ds-fetch-profiles would hand them on (backfill).
"$bin/ds-fake-appview" seed-sql --day 1 --seed 5 --users 30 \
  | grep -o "VALUES ('did:plc:[a-z0-9]*', '[a-z0-9.]*'" | cut -d"'" -f2,4 --output-delimiter=' ' \
  | while read -r did handle; do
      printf '{"type":"user","did":"%s","handle":"%s","displayName":null,"avatar":null,"asOf":"%s","since":null,"baseline":{"posts":0,"likes":0,"replies":0,"quotes":0,"reposts":0},"profileStatus":"ok","profile":{"handle":"%s","displayName":null,"avatar":null,"followers":1,"following":1,"posts":1}}\n' \
        "$did" "$handle" "$DS_NOW" "$handle"
    done >"$work/users.ndjson"
[ "$(wc -l <"$work/users.ndjson")" = 30 ] || die "could not build user records from the fake dataset"
printf '{"type":"end","stage":"ds-select-users","contract":1,"counters":{"users":30},"elapsed_s":0}\n' >>"$work/users.ndjson"

# --- head -1 ---------------------------------------------------------------------------------
# A full backfill of these users takes ~580 getAuthorFeed requests. The first line only comes once
# the first user has 1 MiB of posts (the fetcher's streaming threshold), so "promptly" is measured
# from there: once its reader has gone, the stage must not go on fetching.
head_one() {  # run ds-fetch-feeds | head -1; sets rc, at_first (requests when line 1 arrived), requests
  fake_reset "$port_fake"
  timeout -s KILL 60 "$bin/ds-fetch-feeds" <"$work/users.ndjson" 2>"$work/err" \
    | { head -1 >"$work/first"; exec 0<&-; feed_requests >"$work/at_first"; }
  rc=${PIPESTATUS[0]}
  at_first=$(cat "$work/at_first") requests=$(feed_requests)
}
start=$EPOCHREALTIME
head_one
secs=$(awk "BEGIN { printf \"%.2f\", $EPOCHREALTIME - $start }")
{ [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && ok || bad "ds-fetch-feeds | head -1: exit $rc (want 0 or 141, SIGPIPE)"
[ -s "$work/err" ] && bad "ds-fetch-feeds | head -1: stderr not quiet: $(head -c 400 "$work/err")" || ok
jq -e '.type == "post"' "$work/first" >/dev/null 2>&1 && ok || bad "ds-fetch-feeds | head -1: first line is not a post: $(head -c 200 "$work/first")"
[ $((requests - at_first)) -le 20 ] && ok || bad "ds-fetch-feeds | head -1: went on fetching after its reader left ($at_first requests at the first line, $requests at the end)"
echo "ds-fetch-feeds | head -1: ${secs}s, $at_first getAuthorFeed requests at the first line, $requests in all" >&2

# The same when started with SIGPIPE ignored (some supervisors do that): still quiet, no error.
trap '' PIPE
head_one
trap - PIPE
{ [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && ok || bad "SIGPIPE ignored: ds-fetch-feeds | head -1: exit $rc"
[ -s "$work/err" ] && bad "SIGPIPE ignored: ds-fetch-feeds | head -1: stderr not quiet: $(head -c 400 "$work/err")" || ok
[ $((requests - at_first)) -le 20 ] && ok || bad "SIGPIPE ignored: ds-fetch-feeds went on fetching after its reader left ($at_first -> $requests requests)"

# ds-aggregate on an endless stream, and on a large file: one line, then a quiet end.
post='{"type":"post","uri":"at://did:plc:x/app.bsky.feed.post/3k","did":"did:plc:x","createdAt":"2026-11-01T10:00:00.000Z","sortAt":"2026-11-01T10:00:00.000Z","likes":1,"replies":0,"quotes":0,"reposts":0}'
yes "$post" | timeout -s KILL 30 "$bin/ds-aggregate" 2>"$work/err" | head -1 >"$work/first"
rc=${PIPESTATUS[1]}
{ [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && ok || bad "endless | ds-aggregate | head -1: exit $rc (137 = it never stopped)"
[ -s "$work/err" ] && bad "ds-aggregate | head -1: stderr not quiet: $(head -c 400 "$work/err")" || ok
[ "$(cat "$work/first")" = "$post" ] && ok || bad "ds-aggregate | head -1: first line differs"
(trap '' PIPE; yes "$post" 2>/dev/null | timeout -s KILL 30 "$bin/ds-aggregate" 2>"$work/err" | head -1 >/dev/null; exit "${PIPESTATUS[1]}")
rc=$?
{ [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && ok || bad "SIGPIPE ignored: endless | ds-aggregate | head -1: exit $rc"
[ -s "$work/err" ] && bad "SIGPIPE ignored: ds-aggregate | head -1: stderr not quiet: $(head -c 400 "$work/err")" || ok
yes "$post" | head -300000 >"$work/big.ndjson"
timeout -s KILL 30 "$bin/ds-aggregate" <"$work/big.ndjson" 2>"$work/err" | head -1 >/dev/null
rc=${PIPESTATUS[0]}
{ [ "$rc" = 0 ] || [ "$rc" = 141 ]; } && ok || bad "ds-aggregate <big | head -1: exit $rc"
[ -s "$work/err" ] && bad "ds-aggregate <big | head -1: stderr not quiet: $(head -c 400 "$work/err")" || ok

# --- signals ---------------------------------------------------------------------------------
# ds-aggregate waiting for input on a quiet pipe: SIGTERM and SIGINT end it at once.
for sig in TERM INT; do
  rm -f "$work/fifo"; mkfifo "$work/fifo"
  "$bin/ds-aggregate" <"$work/fifo" >"$work/out" 2>"$work/err" &
  pid=$!
  exec 3>"$work/fifo"
  printf '%s\n%s\n' "$post" '{"type":"note"}' >&3
  sleep 0.5
  kill -$sig $pid
  wait_for $pid 5
  exec 3>&-
  [ "$rc" = 130 ] && ok || bad "ds-aggregate SIG$sig while reading: exit $rc, want 130"
  grep -q "interrupted by SIG$sig" "$work/err" && ok || bad "ds-aggregate SIG$sig: no message on stderr: $(cat "$work/err")"
  [ "$(wc -l <"$work/out")" = 2 ] && whole_json_lines "$work/out" && ok || bad "ds-aggregate SIG$sig: output is not the two lines read: $(head -c 300 "$work/out")"
done

# ds-aggregate stopped while blocked writing to a reader that has stopped reading: the pipe holds
# a cut line at that moment; the stage completes that one line (no more) once the reader drains.
rm -f "$work/fifo"; mkfifo "$work/fifo"
yes "$post" | "$bin/ds-aggregate" >"$work/fifo" 2>"$work/err" &
pid=$!
exec 4<"$work/fifo"
sleep 1
kill -TERM $pid
sleep 0.3
cat <&4 >"$work/out" &
cat_pid=$!
wait_for $pid 10
exec 4<&-
wait $cat_pid
[ "$rc" = 130 ] && ok || bad "ds-aggregate SIGTERM inside a blocked write: exit $rc, want 130"
whole_json_lines "$work/out" && ok || bad "ds-aggregate SIGTERM inside a blocked write: a cut line reached the reader: $(tail -c 200 "$work/out")"
size=$(stat -c %s "$work/out")
[ "$size" -gt 0 ] && [ "$size" -le $((65536 + ${#post} + 1)) ] && ok \
  || bad "ds-aggregate SIGTERM inside a blocked write: wrote $size bytes after the stop (want the pipe's 64 KiB plus at most one line)"
grep -q '"type":"end"' "$work/out" && bad "ds-aggregate wrote an end record after SIGTERM" || ok

# The fetch stages, stopped while requests are in flight and more input may come.
for stage in ds-fetch-feeds ds-fetch-profiles; do
  for sig in TERM INT; do
    rm -f "$work/fifo"; mkfifo "$work/fifo"
    "$bin/$stage" <"$work/fifo" >"$work/out" 2>"$work/err" &
    pid=$!
    exec 3>"$work/fifo"
    # Smallest accounts first (account 0, the biggest, last), so output starts early even in a
    # sanitizer build; the stop then lands while later users are still being fetched.
    grep '"type":"user"' "$work/users.ndjson" | tac >&3
    for _ in $(seq 1 300); do [ -s "$work/out" ] && break; sleep 0.1; done
    kill -$sig $pid
    wait_for $pid 5
    exec 3>&-
    [ "$rc" = 130 ] && ok || bad "$stage SIG$sig: exit $rc, want 130 (999: did not stop within 5 s)"
    grep -q "interrupted by SIG$sig" "$work/err" && ok || bad "$stage SIG$sig: no message on stderr: $(head -c 300 "$work/err")"
    [ -s "$work/out" ] && whole_json_lines "$work/out" && ok || bad "$stage SIG$sig: stdout is empty or not whole JSON lines: $(tail -c 200 "$work/out")"
    grep -q '"type":"end"' "$work/out" && bad "$stage SIG$sig: wrote end records after the stop" || ok
  done
done

finish
