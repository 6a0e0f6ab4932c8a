#!/usr/bin/env bash
# The ds-load benchmark (make bench-load; not part of make test): a backfill of 1M posts for 10k users
# and a daily run over them with 5% of counts changed, beside psql \copy and a one-upsert-per-row baseline, on a private cluster.
#
#   DS_BIN_DIR=build-release/bin bench/load/run.sh [--users N] [--posts P] [--sample S] [--runs R] [--keep]
#                                                  [--no-huge-pages]
#
# Prints a table (rows/s, peak RSS) and the ratios the targets are stated in (docs/performance-load.md).
# Every number comes from this one run, on one cluster with the same settings. (a), psql \copy and
# (b) run R times each (default 3; at most 3, the days the generated streams cover) and the table
# shows the median: on a shared machine one run can be 30% off.
set -euo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to the bin directory of a Release build}
src=$(cd "$(dirname "$0")/../.." && pwd)
# The per-row baseline commits every row (one fsync each), a few hundred rows/s: measured on a sample.
users=10000 posts=100 sample=20000 runs=3 keep=0 huge=1
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=$2; shift ;;
    --posts) posts=$2; shift ;;
    --sample) sample=$2; shift ;;
    --runs) runs=$2; shift ;;
    --keep) keep=1 ;;
    --no-huge-pages) huge=0 ;;
    *) echo "bench-load: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$runs" in 1|2|3) ;; *) echo "bench-load: --runs is 1 to 3" >&2; exit 2 ;; esac
total=$((users * posts))
[ "$sample" -le "$total" ] || sample=$total

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/pg_ctl" ] || { echo "bench-load: PostgreSQL server binaries not found (make deps)" >&2; exit 1; }
cluster=$src/tests/scripts/pg-cluster.sh  # the tests' cluster script: a free port, initdb, start, stop
work=$(mktemp -d /tmp/ds-bench-load.XXXXXX)
chmod 755 "$work"
hugepages_before=""  # vm.nr_hugepages before this script raised it, restored at exit
cleanup() {
  "$cluster" stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "$hugepages_before" ]; then echo "$hugepages_before" >/proc/sys/vm/nr_hugepages || true; fi
  if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
say() { echo "bench-load: $*" >&2; }

# A cluster of its own with production durability (fsync, full_page_writes and synchronous_commit
# at their defaults: on), unlike the test clusters. shared_buffers holds the 1M-post table and its
# indexes, and max_wal_size keeps checkpoints out of the middle of a measurement, as one would
# configure a server for this; autovacuum stays on.
start_cluster() {  # start_cluster on|off: with the shared memory in huge pages or not
  url=$(PG_CLUSTER_SETTINGS="-c shared_buffers=512MB -c max_wal_size=8GB -c huge_pages=$1" "$cluster" start "$work/pg") \
    || { tail -20 "$work/pg/server.log" >&2; exit 1; }
}
# Shared memory in huge pages, as PostgreSQL's documentation recommends for a shared_buffers this
# size. Each new server process maps the shared buffers it touches page by page; in 4 kB pages
# that costs ds-load's two backends (and psql's one) a page fault per few buffers, which on this
# VM is most of a fresh backend's first read of a page (docs/performance-load.md, "Huge pages").
# The script asks the server how many it needs, reserves them when it can (as root), gives them
# back at exit, and says in the table's header which it measured. --no-huge-pages: 4 kB pages.
huge_note="4 kB pages (--no-huge-pages)"
start_cluster off
if [ "$huge" = 1 ]; then
  need=$("$pgbin/psql" -d "$url" -qAtc "SHOW shared_memory_size_in_huge_pages")
  "$cluster" stop "$work/pg"
  free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
  reserved="reserved beforehand"
  if [ "${free:-0}" -lt "$need" ] && [ -w /proc/sys/vm/nr_hugepages ]; then
    hugepages_before=$(cat /proc/sys/vm/nr_hugepages)
    echo $((hugepages_before + need - free)) >/proc/sys/vm/nr_hugepages || true
    free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
    reserved="reserved by this script for the run"
  fi
  if [ "${free:-0}" -ge "$need" ]; then
    huge_note="huge pages ($need of 2 MB, $reserved)"
    start_cluster on
  else
    huge_note="4 kB pages: could not reserve $need huge pages (run as root, or set vm.nr_hugepages)"
    say "$huge_note; measuring without them"
    start_cluster off
  fi
fi
psql_q() { "$pgbin/psql" -d "$url" -v ON_ERROR_STOP=1 -qAt "$@"; }
export DATABASE_URL=$url LOG_LEVEL=info  # ds-load's summary line (info) goes to its log

say "schema, $users accounts; generating $total posts (day 1 to day $((runs + 1)) streams, day 1 as COPY rows)"
"$bin/ds-migrate" >/dev/null 2>"$work/migrate.log" || { cat "$work/migrate.log" >&2; exit 1; }
"$src/bench/load/gen-stream.sh" --users "$users" --format users >"$work/users.tsv"
psql_q -c "\\copy users (did, handle) FROM '$work/users.tsv'"
"$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day 1 >"$work/day1.ndjson"
for d in $(seq 2 $((runs + 1))); do
  "$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day "$d" >"$work/day$d.ndjson"
done
"$src/bench/load/gen-stream.sh" --users "$users" --posts "$posts" --day 1 --format tsv >"$work/day1.tsv"
head -n "$sample" "$work/day1.tsv" >"$work/sample.tsv"
# shellcheck disable=SC2046
c++ -O2 -std=c++20 -o "$work/row-insert" "$src/bench/load/row_insert.cpp" $(pkg-config --cflags --libs libpq)

# run LABEL APP BACKENDS INPUT CMD...: runs CMD (a program) on INPUT and records, for the table:
#   secs   wall seconds;
#   cpu    CPU seconds of CMD itself (bash's `time`) plus those of its BACKENDS server backends
#          (found by application_name APP or APP-*: ds-load reads on a second connection, named
#          dopplersky-reader; read from /proc/PID/stat until they exit; the last 50 ms may be
#          missed). This machine is shared: wall times move with everyone else's load, CPU
#          seconds much less, so the table shows both;
#   rss    CMD's peak RSS (VmHWM, read from /proc every 50 ms; ds-load reaches its peak early).
declare -A secs cpu rss
tck=$(getconf CLK_TCK)
run() {
  local label=$1 app=$2 backends=$3 input=$4
  shift 4
  psql_q -c CHECKPOINT
  local t0 t1 hwm=0 pid="" bpids=() line f b
  local -A bticks=()
  t0=$(date +%s.%N)
  ( TIMEFORMAT='%U %S'; time "$@" <"$input" >/dev/null 2>"$work/$label.log" ) 2>"$work/$label.time" &
  local outer=$!
  while kill -0 "$outer" 2>/dev/null; do
    [ -n "$pid" ] || pid=$(pgrep -P "$outer" | head -1 || true)
    [ "${#bpids[@]}" -ge "$backends" ] || mapfile -t bpids < <(psql_q -c "SELECT pid FROM pg_stat_activity WHERE (application_name = '$app' OR application_name LIKE '$app-%') AND pid <> pg_backend_pid()" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
      while IFS= read -r line; do
        case $line in VmHWM:*) f=${line//[!0-9]/}; [ "$f" -gt "$hwm" ] && hwm=$f ;; esac
      done <"/proc/$pid/status" 2>/dev/null || true
    fi
    for b in "${bpids[@]}"; do
      if read -r -a f <"/proc/$b/stat" 2>/dev/null; then bticks[$b]=$(( f[13] + f[14] )); fi
    done
    sleep 0.05
  done
  wait "$outer" || { cat "$work/$label.log" >&2; echo "bench-load: $label failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  secs[$label]=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  local ticks=0
  for b in "${bticks[@]}"; do ticks=$((ticks + b)); done
  cpu[$label]=$(awk -v t="$(tail -1 "$work/$label.time")" -v b="$ticks" -v hz="$tck" \
    'BEGIN {split(t, c, " "); printf "%.2f", c[1] + c[2] + b / hz}')
  rss[$label]=$hwm
  say "$label: ${secs[$label]} s wall, ${cpu[$label]} s CPU (client + server), peak RSS $((hwm / 1024)) MB"
}
empty_tables() { psql_q -c "TRUNCATE posts, snapshots, ds_user_state"; }
copy_sql="\\copy posts (uri, did, likes, replies, quotes, reposts, \"createdAt\", sort_at) FROM pstdin"

say "(a) baseline: one upsert per row into the empty posts table ($sample rows)"
empty_tables
run rows_a ds-bench-rows 1 "$work/sample.tsv" "$work/row-insert" "$url?application_name=ds-bench-rows"
say "(a) $runs times each, alternating: psql \\copy of the same $total rows into the empty posts table, then ds-load's day-1 backfill"
for r in $(seq "$runs"); do
  empty_tables
  run "copy$r" psql 1 "$work/day1.tsv" "$pgbin/psql" -d "$url" -v ON_ERROR_STOP=1 -qAt -c "$copy_sql"
  empty_tables
  run "load_a$r" dopplersky 2 "$work/day1.ndjson" "$bin/ds-load"
  [ "$(psql_q -c "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" = completed ] || { echo "bench-load: run (a) not completed" >&2; exit 1; }
done
for r in $(seq "$runs"); do
  # A day passes: autovacuum would have visited the table by the next run.
  psql_q -c "VACUUM ANALYZE posts" -c "VACUUM ANALYZE snapshots"
  say "(b) ds-load: the day-$((r + 1)) daily run, same $total posts, 5% of counts changed since the day before"
  run "load_b$r" dopplersky 2 "$work/day$((r + 1)).ndjson" "$bin/ds-load"
  [ "$(psql_q -c "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" = completed ] || { echo "bench-load: run (b) not completed" >&2; exit 1; }
done
changed=$(psql_q -c "SELECT count(*) FROM posts WHERE \"updatedAt\" > (SELECT time_started FROM snapshot_logs ORDER BY id DESC LIMIT 1)")
say "(b) baseline: one upsert per row over $sample stored rows, some of them changed (back to day 1)"
run rows_b ds-bench-rows 1 "$work/sample.tsv" "$work/row-insert" "$url?application_name=ds-bench-rows"
grep -hE 'run [0-9]+ completed' "$work"/load_a*.log "$work"/load_b*.log | sed 's/^/  /' >&2 || true

# The median of the runs of each measurement (wall and CPU each), and the highest peak RSS.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
all_runs() {  # all_runs ARRAY KEY: the values of KEY1..KEYruns
  local -n a=$1
  local r
  for r in $(seq "$runs"); do echo "${a[$2$r]}"; done
}
for key in copy load_a load_b; do
  secs[$key]=$(median $(all_runs secs $key) | xargs printf '%.2f')
  cpu[$key]=$(median $(all_runs cpu $key) | xargs printf '%.2f')
  rss[$key]=$(all_runs rss $key | sort -g | tail -1)
done

calc() { awk "BEGIN {print $1}"; }
rate() { calc "$1 / ${secs[$2]}" | xargs printf '%.0f'; }
mb() { calc "${rss[$1]} / 1024" | xargs printf '%.1f'; }
ratio() { calc "$1 / $2" | xargs printf '%.2f'; }
verdict() { if [ "$(calc "($1) ? 1 : 0")" = 1 ]; then echo met; else echo MISSED; fi; }
row() {  # row LABEL ROWS KEY [RSS]
  printf '%-56s %8d %8.2f %9s %8.2f %9s\n' "$1" "$2" "${secs[$3]}" "$(rate "$2" "$3")" "${cpu[$3]}" "${4:-$(mb "$3") MB}"
}

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo
echo "ds-load benchmark: $users users x $posts posts = $total posts; PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
echo "machine: $(nproc) CPUs ($cpu_model), $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo) RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: shared_buffers 512 MB in $huge_note"
echo
printf '%-56s %8s %8s %9s %8s %9s\n' "" rows "wall s" "rows/s" "CPU s" "peak RSS"
row "(a) ds-load: backfill into empty tables" "$total" load_a
row "    psql \\copy of the same rows into the same table" "$total" copy "-"
row "    one upsert per row, autocommit (first $sample rows)" "$sample" rows_a
row "(b) ds-load: daily run, $changed of the posts changed" "$total" load_b
row "    one upsert per row, autocommit (first $sample rows)" "$sample" rows_b
echo
r_copy=$(ratio "${secs[load_a]}" "${secs[copy]}")
r_copy_cpu=$(ratio "${cpu[load_a]}" "${cpu[copy]}")
r_ab=$(ratio "${secs[load_a]}" "${secs[load_b]}")
r_ab_cpu=$(ratio "${cpu[load_a]}" "${cpu[load_b]}")
printf '%-46s %6s wall %6s CPU   target <= 1.5: %s\n' "(a) ds-load / psql \\copy" "$r_copy" "$r_copy_cpu" "$(verdict "$r_copy <= 1.5")"
printf '%-46s %6s wall %6s CPU   target >= 5:   %s\n' "(a) / (b)" "$r_ab" "$r_ab_cpu" "$(verdict "$r_ab >= 5")"
printf '%-46s %13s MB         target < 100:  %s\n' "peak RSS of ds-load (a) / (b)" "$(mb load_a) / $(mb load_b)" \
  "$(verdict "${rss[load_a]} < 102400 && ${rss[load_b]} < 102400")"
printf '%-46s %6s x wall\n' "ds-load (a) rows/s over one upsert per row" "$(ratio "$(rate "$total" load_a)" "$(rate "$sample" rows_a)")"
printf '%-46s %6s x wall\n' "ds-load (b) rows/s over one upsert per row" "$(ratio "$(rate "$total" load_b)" "$(rate "$sample" rows_b)")"
echo
echo "each run, wall s (the table shows the medians):"
for key in load_a copy load_b; do
  printf '  %-8s %s\n' "$key" "$(all_runs secs "$key" | xargs)"
done
