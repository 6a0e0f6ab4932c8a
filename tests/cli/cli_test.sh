#!/usr/bin/env bash
# CLI contract of every program: --help exits 0, an unknown flag exits 2 with a message, a
# malformed line is reported with its line number and skipped (exit 3), empty input gives empty
# output, and ds-aggregate's output for a fixed input matches a golden file.
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start cli
golden="$src/tests/cli/golden"

# No database, no API: every test here must work offline. The closed port makes any accidental
# request fail loudly instead of leaving the machine.
export BLUESKY_BASE_URL=http://127.0.0.1:9 DATABASE_URL=postgresql://nobody@127.0.0.1:9/none
unset DS_NOW

for p in ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load ds-migrate ds-fake-appview; do
  "$bin/$p" --help >"$work/out" 2>"$work/err"; expect "$p --help: exit" $? 0
  expect_grep "$p|Usage|Options" "$work/out" "$p --help text"
  [ -s "$work/err" ] && bad "$p --help wrote to stderr: $(head -c 200 "$work/err")" || ok
  "$bin/$p" --no-such-flag >"$work/out" 2>"$work/err"; expect "$p --no-such-flag: exit" $? 2
  expect_grep "no-such-flag" "$work/err" "$p unknown flag message"
  [ -s "$work/out" ] && bad "$p usage error wrote to stdout" || ok
done

# Stdin stages that need no server when the input holds no user: bad lines and empty input.
for p in ds-fetch-profiles ds-fetch-feeds ds-aggregate; do
  : | "$bin/$p" >"$work/out" 2>"$work/err"; expect "$p empty input: exit" $? 0
  [ -s "$work/out" ] && bad "$p: empty input gave output: $(head -c 200 "$work/out")" || ok

  printf '%s\n' '{"type":"note","n":1}' '{"type":"post",' '{"type":"note","n":2}' \
    | "$bin/$p" >"$work/out" 2>"$work/err"; expect "$p malformed line: exit" $? 3
  expect_grep "stdin:2: .*malformed JSON" "$work/err" "$p names the bad line"
  [ "$(grep -c '"type":"note"' "$work/out")" = 2 ] && ok || bad "$p lost the good lines around a bad one"
  [ "$(grep -c 'stdin:' "$work/err")" = 1 ] && ok || bad "$p: want exactly one error line"

  printf '%s\n' '{"type":"note"}' '{"type":"post",' | "$bin/$p" --strict >"$work/out" 2>"$work/err"
  expect "$p --strict: exit" $? 1
  expect_grep "stdin:2:" "$work/err" "$p --strict names the line"
done

# A configuration that cannot work is a usage error, named.
: | MAX_WORKERS=abc "$bin/ds-fetch-feeds" >"$work/out" 2>"$work/err"; expect "MAX_WORKERS=abc: exit" $? 2
expect_grep "MAX_WORKERS" "$work/err" "bad MAX_WORKERS is named"
: | RATE_LIMIT_RPS=2.5x "$bin/ds-fetch-profiles" >"$work/out" 2>"$work/err"; expect "RATE_LIMIT_RPS=2.5x: exit" $? 2
expect_grep "RATE_LIMIT_RPS=2.5x is not a number" "$work/err" "bad RATE_LIMIT_RPS is named"
: | RATE_LIMIT_RPS=2.5 "$bin/ds-fetch-profiles" >"$work/out" 2>"$work/err"; expect "RATE_LIMIT_RPS=2.5 (a shard's share): exit" $? 0
: | "$bin/ds-fetch-feeds" --rate-limit 0.75 >"$work/out" 2>"$work/err"; expect "--rate-limit 0.75: exit" $? 0
"$bin/ds-aggregate" --config /nonexistent.env </dev/null >"$work/out" 2>"$work/err"; expect "missing --config file: exit" $? 2
expect_grep "nonexistent.env" "$work/err" "missing config file is named"

# Golden: a fixed stream through ds-aggregate (elapsed times removed).
"$bin/ds-aggregate" <"$golden/aggregate.in.ndjson" 2>"$work/err" | sed -E 's/"elapsed_s":[^}]*\}$/"elapsed_s":0}/' >"$work/out"
expect "ds-aggregate golden run: exit" "${PIPESTATUS[0]}" 0
if diff -u "$golden/aggregate.out.ndjson" "$work/out" >"$work/diff"; then ok; else bad "ds-aggregate golden output differs:"; cat "$work/diff" >&2; fi

# FULL_REFRESH_DAYS longer than the records' window: said once, and the run goes on. Two quiet
# accounts with empty 7-day windows and yesterday's clock need no request either way.
quiet_user() {
  printf '{"type":"user","did":"did:plc:%s","handle":"%s.test","asOf":"2026-11-10T06:00:00.000Z","since":"2026-11-03T06:00:00.000Z","baseline":{"posts":54,"likes":0,"replies":0,"quotes":0,"reposts":0},"lastSnapshot":{"date":"2026-11-09","posts":54},"windowUris":[],"refreshClock":"2026-11-09","profileStatus":"ok","profile":{"handle":"%s.test","followers":1,"following":1,"posts":54}}\n' "$1" "$1" "$1"
}
{ quiet_user quieta; quiet_user quietb; } >"$work/quiet.ndjson"
FULL_REFRESH_DAYS=14 "$bin/ds-fetch-feeds" <"$work/quiet.ndjson" >"$work/out" 2>"$work/err"
expect "FULL_REFRESH_DAYS=14 over a 7-day window: exit" $? 0
[ "$(grep -c 'FULL_REFRESH_DAYS 14 is longer than the input.s 7-day window' "$work/err")" = 1 ] && ok \
  || bad "want one warning that the 7-day window cuts FULL_REFRESH_DAYS 14: $(head -c 300 "$work/err")"
[ "$(jq -r 'select(.type == "user") | .feed.status' "$work/out" | sort -u)" = complete ] && ok \
  || bad "the quiet accounts were not completed under the warning"
"$bin/ds-fetch-feeds" <"$work/quiet.ndjson" >"$work/out" 2>"$work/err"; expect "FULL_REFRESH_DAYS 7: exit" $? 0
grep -q FULL_REFRESH_DAYS "$work/err" && bad "a warning about FULL_REFRESH_DAYS 7 over a 7-day window" || ok

# Health checks fail clearly against closed ports.
"$bin/ds-fetch-profiles" --health >"$work/out" 2>"$work/err"; expect "ds-fetch-profiles --health (API down): exit" $? 6
expect_grep "127.0.0.1:9" "$work/err" "API health names the URL"
"$bin/ds-select-users" --health >"$work/out" 2>"$work/err"; expect "ds-select-users --health (DB down): exit" $? 5
expect_grep "127.0.0.1|connect" "$work/err" "DB health says what failed"

finish
