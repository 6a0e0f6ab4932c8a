#!/usr/bin/env bash
# CLI contract of every program: --help exits 0, an unknown flag exits 2 with a message, a
# malformed line is reported with its line number and skipped (exit 3), empty input gives empty
# output, and ds-aggregate's output for a fixed input matches a golden file.
set -uo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to build/bin}
src=${DS_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
golden="$src/tests/cli/golden"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*" >&2; }
expect_rc() {  # expect_rc WANT GOT WHAT
  if [ "$1" = "$2" ]; then ok; else bad "$3: exit $2, want $1"; fi
}
expect_grep() {  # expect_grep PATTERN FILE WHAT
  if grep -qE -- "$1" "$2"; then ok; else bad "$3: /$1/ not in: $(head -c 400 "$2")"; fi
}

# No database, no API: every test here must work offline. The closed port makes any accidental
# request fail loudly instead of leaving the machine.
export BLUESKY_BASE_URL=http://127.0.0.1:9 DATABASE_URL=postgresql://nobody@127.0.0.1:9/none
unset DS_NOW

for p in ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load ds-migrate ds-fake-appview; do
  "$bin/$p" --help >"$tmp/out" 2>"$tmp/err"; expect_rc 0 $? "$p --help"
  expect_grep "$p|Usage|Options" "$tmp/out" "$p --help text"
  [ -s "$tmp/err" ] && bad "$p --help wrote to stderr: $(head -c 200 "$tmp/err")" || ok
  "$bin/$p" --no-such-flag >"$tmp/out" 2>"$tmp/err"; expect_rc 2 $? "$p --no-such-flag"
  expect_grep "no-such-flag" "$tmp/err" "$p unknown flag message"
  [ -s "$tmp/out" ] && bad "$p usage error wrote to stdout" || ok
done

# Stdin stages that need no server when the input holds no user: bad lines and empty input.
for p in ds-fetch-profiles ds-fetch-feeds ds-aggregate; do
  : | "$bin/$p" >"$tmp/out" 2>"$tmp/err"; expect_rc 0 $? "$p empty input"
  [ -s "$tmp/out" ] && bad "$p: empty input gave output: $(head -c 200 "$tmp/out")" || ok

  printf '%s\n' '{"type":"note","n":1}' '{"type":"post",' '{"type":"note","n":2}' \
    | "$bin/$p" >"$tmp/out" 2>"$tmp/err"; expect_rc 3 $? "$p malformed line"
  expect_grep "stdin:2: .*malformed JSON" "$tmp/err" "$p names the bad line"
  [ "$(grep -c '"type":"note"' "$tmp/out")" = 2 ] && ok || bad "$p lost the good lines around a bad one"
  [ "$(grep -c 'stdin:' "$tmp/err")" = 1 ] && ok || bad "$p: want exactly one error line"

  printf '%s\n' '{"type":"note"}' '{"type":"post",' | "$bin/$p" --strict >"$tmp/out" 2>"$tmp/err"
  expect_rc 1 $? "$p --strict"
  expect_grep "stdin:2:" "$tmp/err" "$p --strict names the line"
done

# A configuration that cannot work is a usage error, named.
: | MAX_WORKERS=abc "$bin/ds-fetch-feeds" >"$tmp/out" 2>"$tmp/err"; expect_rc 2 $? "MAX_WORKERS=abc"
expect_grep "MAX_WORKERS" "$tmp/err" "bad MAX_WORKERS is named"
: | RATE_LIMIT_RPS=2.5x "$bin/ds-fetch-profiles" >"$tmp/out" 2>"$tmp/err"; expect_rc 2 $? "RATE_LIMIT_RPS=2.5x"
expect_grep "RATE_LIMIT_RPS=2.5x is not a number" "$tmp/err" "bad RATE_LIMIT_RPS is named"
: | RATE_LIMIT_RPS=2.5 "$bin/ds-fetch-profiles" >"$tmp/out" 2>"$tmp/err"; expect_rc 0 $? "RATE_LIMIT_RPS=2.5 (a shard's share)"
: | "$bin/ds-fetch-feeds" --rate-limit 0.75 >"$tmp/out" 2>"$tmp/err"; expect_rc 0 $? "--rate-limit 0.75"
"$bin/ds-aggregate" --config /nonexistent.env </dev/null >"$tmp/out" 2>"$tmp/err"; expect_rc 2 $? "missing --config file"
expect_grep "nonexistent.env" "$tmp/err" "missing config file is named"

# Golden: a fixed stream through ds-aggregate (elapsed times removed).
"$bin/ds-aggregate" <"$golden/aggregate.in.ndjson" 2>"$tmp/err" | sed -E 's/"elapsed_s":[^}]*\}$/"elapsed_s":0}/' >"$tmp/out"
expect_rc 0 "${PIPESTATUS[0]}" "ds-aggregate golden run"
if diff -u "$golden/aggregate.out.ndjson" "$tmp/out" >"$tmp/diff"; then ok; else bad "ds-aggregate golden output differs:"; cat "$tmp/diff" >&2; fi

# Health checks fail clearly against closed ports.
"$bin/ds-fetch-profiles" --health >"$tmp/out" 2>"$tmp/err"; expect_rc 6 $? "ds-fetch-profiles --health (API down)"
expect_grep "127.0.0.1:9" "$tmp/err" "API health names the URL"
"$bin/ds-select-users" --health >"$tmp/out" 2>"$tmp/err"; expect_rc 5 $? "ds-select-users --health (DB down)"
expect_grep "127.0.0.1|connect" "$tmp/err" "DB health says what failed"

echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
