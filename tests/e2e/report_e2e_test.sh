#!/usr/bin/env bash
# ds-report on an end-to-end database (three runs: completed, completed, partial, and a day without
# a run): the page parses as HTML, names the runs and accounts, references nothing outside itself,
# and headless Chromium (installed here by scripts/deps.sh report-test) renders it to a real picture.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start report_e2e  # bin, src, a fresh $work; its cluster stopped and $work removed on exit

step "chromium and python3, installed the way make deps installs what is missing"
"$src/scripts/deps.sh" report-test || die "scripts/deps.sh report-test"
py=/usr/bin/python3
check() { "$py" "$src/tests/scripts/report-check.py" "$@"; }

step "runs on days 1, 2 and 4 (day 4 with failing requests, so partial)"
url=$(DS_BIN_DIR="$bin" DS_SOURCE_DIR="$src" E2E_FAULT_DAYS=4 "$src/tests/scripts/e2e-db.sh" "$work" 1 2 4) \
  || die "building the e2e database"
. "$work/pg/env"
export DATABASE_URL="$url" DS_NOW=2026-11-05T07:00:00Z LOG_LEVEL=warning
q() { psql_q -d "$url" -c "$1"; }

step "the nightly report"
rc=0; "$bin/ds-report" -o "$work/report.html" 2>"$work/report.err" || rc=$?
expect "ds-report exits 0" "$rc" 0
expect "and writes nothing but the file" "$(cat "$work/report.err")" ""
html_check=$(check html "$work/report.html" || true)
expect "parses as HTML, every element closed in order, no script, no external reference" "$html_check" ok
grep -qiE '(src|href)="https?:|<script|url\((https?:|//)|@import' "$work/report.html" \
  && bad "an external reference or a script in the page" || ok "grep finds no network reference either"
for id in $(q "SELECT id FROM snapshot_logs ORDER BY id"); do
  grep -qF "<td>#$id</td>" "$work/report.html" && ok "run #$id is in the table" || bad "run #$id is not in the table"
done
expect "every completed run has its status pill" "$(grep -o 'class="pill completed"' "$work/report.html" | wc -l)" \
  "$(q "SELECT count(*) FROM snapshot_logs WHERE status = 'completed'")"
expect "the last run (day 4) is partial, in its tile and its row" \
  "$(grep -o 'class="pill partial"' "$work/report.html" | wc -l)" 2
grep -qF "<title>No run on 2026-11-04</title>" "$work/report.html" && ok "the day without a run is marked" || bad "no gap for 2026-11-04"
quiet=$(q "SELECT u.handle FROM users u WHERE NOT COALESCE(skip_user, false) AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.did = u.did AND s.date > '2026-11-02') ORDER BY u.did LIMIT 1")
[ -n "$quiet" ] && grep -qF ">$quiet<br>" "$work/report.html" && ok "a quiet account ($quiet) is listed" || bad "quiet account '$quiet' not listed"
expect "tracked accounts" "$(grep -o 'Tracked accounts</div><div class="value">[0-9,]*' "$work/report.html" | sed 's/.*>//')" \
  "$(q "SELECT count(*) FROM users WHERE NOT COALESCE(skip_user, false)")"
grep -qF "None are tracked yet." "$work/report.html" && ok "backfills: the marked place" || bad "no backfills placeholder"

step "one account: its display name escaped"
zoe=$(q "SELECT handle FROM users WHERE \"displayName\" LIKE '%O''Brien%' LIMIT 1")
rc=0; "$bin/ds-report" --account "$zoe" -o "$work/account.html" 2>/dev/null || rc=$?
expect "ds-report --account exits 0" "$rc" 0
expect "its page parses" "$(check html "$work/account.html" || true)" ok
grep -qF "Zoë O&#39;Brien" "$work/account.html" && ok "display name escaped" || bad "display name missing or unescaped"
expect "a table row per snapshot" "$(grep -o '<td>2026-11-0[0-9]</td>' "$work/account.html" | wc -l)" \
  "$(q "SELECT count(*) FROM snapshots s JOIN users u USING (did) WHERE u.handle = '$zoe'")"
rc=0; "$bin/ds-report" --account nobody.invalid -o "$work/none.html" 2>/dev/null || rc=$?
expect "an unknown --account exits 2" "$rc" 2

step "headless Chromium renders it"
started=$(date +%s)
timeout 90 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-extensions \
  --screenshot="$work/report.png" --window-size=1100,1500 "file://$work/report.html" >"$work/chromium.log" 2>&1 \
  || { tail -5 "$work/chromium.log" >&2; bad "chromium failed"; }
echo "   chromium took $(( $(date +%s) - started )) s" >&2
read -r w h colours < <(check png "$work/report.png" || echo "0 0 0")
expect "the PNG has the window's size" "$w x $h" "1100 x 1500"
[ "${colours:-0}" -ge 40 ] && ok "the PNG is a picture ($colours distinct colours), not a blank page" \
  || bad "the PNG has only ${colours:-0} colours"

echo "$test_name: $passed passed, $failed failed" >&2
[ "$failed" = 0 ]
