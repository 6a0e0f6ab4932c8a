#!/usr/bin/env bash
# Security basics an operator relies on (issue 5): a .env readable by others is warned about, a
# password never shows in --help, in logs or in error messages, and --insecure says so loudly.
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start security

# Nothing here reaches a server: closed loopback ports only.
unset DATABASE_URL DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD DS_NOW
export BLUESKY_BASE_URL=http://127.0.0.1:9
secret=Tr0ub4dor-s3cret

# 1. A .env readable by others is warned about (it may hold a password); mode 600 is not.
mkdir "$work/run" && cd "$work/run" || exit 1
printf 'DATABASE_URL=postgresql://ds:%s@127.0.0.1:9/ds?connect_timeout=2\n' "$secret" >.env
chmod 644 .env
"$bin/ds-migrate" --status >"$work/out" 2>"$work/err"
rc=$?
[ "$rc" != 0 ] && ok || bad "ds-migrate against a closed port exited 0"
expect_grep "\.env is readable by other users" "$work/err" ".env mode 644 warning"
expect_no_grep "$secret" "$work/err" "ds-migrate connection error"
chmod 600 .env
"$bin/ds-select-users" >"$work/out" 2>"$work/err"
expect_no_grep "readable by other users" "$work/err" ".env mode 600 (no warning)"
expect_grep "127\.0\.0\.1" "$work/err" "ds-select-users error names the database it tried"
expect_no_grep "$secret" "$work/err" "ds-select-users connection error"

# 2. The password from the environment never shows in --help (no defaults echo it) nor in the
# log lines of a debug-level run of each database stage.
export DB_PASSWORD=$secret DB_HOST=127.0.0.1 DB_PORT=9 DB_NAME=ds DB_USER=ds LOG_LEVEL=debug
for p in ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load ds-migrate; do
  "$bin/$p" --help >"$work/out" 2>&1
  expect_no_grep "$secret" "$work/out" "$p --help"
done
for p in ds-select-users ds-migrate; do
  "$bin/$p" >"$work/out" 2>"$work/err" </dev/null
  expect_no_grep "$secret" "$work/err" "$p debug log with DB_PASSWORD"
done
printf '%s\n' '{"type":"end","stage":"ds-aggregate"}' | "$bin/ds-load" >"$work/out" 2>"$work/err"
expect_no_grep "$secret" "$work/err" "ds-load debug log with DB_PASSWORD"
unset DB_PASSWORD DB_HOST DB_PORT DB_NAME DB_USER LOG_LEVEL

# 3. --insecure turns TLS verification off only with a warning in the log.
user='{"type":"user","did":"did:plc:aaaa","handle":"alice.test","displayName":null,"avatar":null,"asOf":"2026-11-29T06:00:00.000Z","since":null,"baseline":{"posts":0,"likes":0,"replies":0,"quotes":0,"reposts":0}}'
printf '%s\n' "$user" | "$bin/ds-fetch-profiles" --insecure --max-attempts 1 >"$work/out" 2>"$work/err"
expect_grep "TLS certificate verification is OFF" "$work/err" "ds-fetch-profiles --insecure warning"
expect_no_grep "line skipped" "$work/err" "the test's user record is valid"
printf '%s\n' "$user" | "$bin/ds-fetch-profiles" --max-attempts 1 >"$work/out" 2>"$work/err"
expect_no_grep "verification is OFF" "$work/err" "ds-fetch-profiles without --insecure"

finish
