#!/usr/bin/env bash
# The fetch benchmark (make bench-fetch; not part of make test): ds-fetch-profiles | ds-fetch-feeds
# against the fake AppView with 50 ms latency, at several concurrency levels, beside a baseline that
# sends one request at a time on a new connection each (bench/fetch/baseline.cpp), in the same run.
#
#   DS_BIN_DIR=build-release/bin bench/fetch/run.sh [--users N] [--latency-ms MS] [--posts-scale S]
#                                                   [--concurrency "1 8 32 64"] [--cap R] [--keep]
#
# Prints a table (users/s, requests/s, connections) with ratios to the baseline, and a rate-capped
# run's wall time against requests / R (docs/performance-fetch.md). No database: the input is the
# `user` records ds-fake-appview user-records writes (all incremental, a 7-day window).
set -euo pipefail
bin=${DS_BIN_DIR:?set DS_BIN_DIR to the bin directory of a Release build}
src=$(cd "$(dirname "$0")/../.." && pwd)
users=2000 latency=50 scale=0.05 levels="1 8 32 64" cap=100 cap_conc=32 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=$2; shift ;;
    --latency-ms) latency=$2; shift ;;
    --posts-scale) scale=$2; shift ;;
    --concurrency) levels=$2; shift ;;
    --cap) cap=$2; shift ;;
    --keep) keep=1 ;;
    *) echo "bench-fetch: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
work=$(mktemp -d /tmp/ds-bench-fetch.XXXXXX)
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
say() { echo "bench-fetch: $*" >&2; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
end_counter() { jq -r --arg s "$2" --arg n "$3" 'select(.type == "end" and .stage == $s) | .counters[$n]' "$1" | tail -1; }

say "building the baseline (one new connection per request)"
c++ -O2 -std=c++20 -o "$work/fetch-baseline" "$src/bench/fetch/baseline.cpp" -lcurl -lsimdjson

# The server must never be what is measured: a thread per connection (512 >> 2 x 64), the
# advertised rate limit out of reach so the client never slows down for it.
"$bin/ds-fake-appview" --port 0 --port-file "$work/port" --day 1 --users "$users" --posts-scale "$scale" \
  --latency-ms "$latency" --threads 512 --rate-limit 1000000000 --rate-window-s 60 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { cat "$work/fake.log" >&2; exit 1; }
base="http://127.0.0.1:$(cat "$work/port")"
"$bin/ds-fake-appview" user-records --day 1 --users "$users" --posts-scale "$scale" >"$work/users.ndjson"
n_users=$(grep -c '"type":"user"' "$work/users.ndjson")
export LOG_LEVEL=warning

# pipeline NAME CONCURRENCY CAP: one measured run; sets wall, reqs, users_out, conns, maxfl
pipeline() {
  local name=$1 conc=$2 rate=$3 t0 t1
  curl -fsS -X POST "$base/_fake/stats/reset" >/dev/null
  local args=(--base-url "$base" --concurrency "$conc" --rate-limit "$rate")
  t0=$(now)
  "$bin/ds-fetch-profiles" "${args[@]}" <"$work/users.ndjson" 2>"$work/$name-profiles.log" \
    | "$bin/ds-fetch-feeds" "${args[@]}" >"$work/$name.ndjson" 2>"$work/$name-feeds.log"
  t1=$(now)
  wall=$(secs "$t0" "$t1")
  curl -fsS "$base/_fake/stats" >"$work/$name.stats"
  reqs=$(( $(end_counter "$work/$name.ndjson" ds-fetch-profiles requests) + $(end_counter "$work/$name.ndjson" ds-fetch-feeds requests) ))
  users_out=$(end_counter "$work/$name.ndjson" ds-fetch-feeds users)
  conns=$(jq .connections_opened "$work/$name.stats")
  maxfl=$(jq .max_in_flight "$work/$name.stats")
  local bad
  bad=$(( $(end_counter "$work/$name.ndjson" ds-fetch-profiles failed) + $(end_counter "$work/$name.ndjson" ds-fetch-feeds failed) ))
  [ "$bad" = 0 ] && [ "$users_out" = "$n_users" ] || { say "$name: $bad failed users, $users_out of $n_users written"; exit 1; }
}

say "warm-up (the fake builds and caches each feed on first use), unmeasured"
pipeline warmup 64 0

row() {  # row LABEL CONC WALL USERS REQS CONNS MAXFL
  awk -v l="$1" -v c="$2" -v w="$3" -v u="$4" -v r="$5" -v k="$6" -v m="$7" -v bu="${base_ups:-0}" \
    'BEGIN { ups = u / w; printf "%-30s %5s %8.2f %6d %8d %9.1f %9.1f %8s %6d %6d\n", l, c, w, u, r, ups, r / w,
             (bu > 0 ? sprintf("%.1fx", ups / bu) : "1.0x"), k, m }'
}
table="$work/table.txt"
printf '%-30s %5s %8s %6s %8s %9s %9s %8s %6s %6s\n' "mode" "conc" "wall_s" "users" "requests" "users/s" \
  "req/s" "vs base" "conns" "maxfl" >"$table"

say "baseline: one request at a time, a new connection each ($n_users users)"
curl -fsS -X POST "$base/_fake/stats/reset" >/dev/null
"$work/fetch-baseline" "$base" <"$work/users.ndjson" >"$work/baseline.out"
read -r b_users b_reqs b_failed b_elapsed < <(sed 's/[a-z_]*=//g' "$work/baseline.out")
curl -fsS "$base/_fake/stats" >"$work/baseline.stats"
[ "$b_failed" = 0 ] || { say "baseline: $b_failed requests failed"; exit 1; }
base_ups=$(awk -v u="$b_users" -v w="$b_elapsed" 'BEGIN { print u / w }')
row "baseline (new conn/request)" 1 "$b_elapsed" "$b_users" "$b_reqs" "$(jq .connections_opened "$work/baseline.stats")" \
  "$(jq .max_in_flight "$work/baseline.stats")" >>"$table"

for c in $levels; do
  say "ds-fetch-profiles | ds-fetch-feeds at concurrency $c, no rate cap"
  pipeline "c$c" "$c" 0
  [ "$reqs" = "$b_reqs" ] || say "note: concurrency $c sent $reqs requests, the baseline $b_reqs"
  row "pipeline, no cap" "$c" "$wall" "$users_out" "$reqs" "$conns" "$maxfl" >>"$table"
  eval "ups_c$c=\$(awk -v u=$users_out -v w=$wall 'BEGIN { print u / w }')"
done

say "rate cap $cap requests/s per stage at concurrency $cap_conc"
pipeline capped "$cap_conc" "$cap"
row "pipeline, cap $cap/s per stage" "$cap_conc" "$wall" "$users_out" "$reqs" "$conns" "$maxfl" >>"$table"
feeds_reqs=$(end_counter "$work/capped.ndjson" ds-fetch-feeds requests)
feeds_elapsed=$(jq -r 'select(.type == "end" and .stage == "ds-fetch-feeds") | .elapsed_s' "$work/capped.ndjson" | tail -1)

# Same input, same answers: the same lines at every concurrency (end records carry timings).
same=yes
for c in $levels; do
  cmp -s <(grep -v '"type":"end"' "$work/c$c.ndjson") <(grep -v '"type":"end"' "$work/capped.ndjson") || same=no
done

echo
echo "fetch benchmark: $n_users users, fake AppView with ${latency} ms latency, posts-scale $scale, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$table"
echo
awk -v b="$base_ups" -v c="${ups_c32:-0}" 'BEGIN { if (c > 0) printf "users/s at concurrency 32 / baseline: %.1fx (target >= 20x): %s\n", c / b, (c / b >= 20 ? "met" : "NOT met") }'
awk -v w="$wall" -v r="$reqs" -v cap="$cap" -v fr="$feeds_reqs" -v fe="$feeds_elapsed" 'BEGIN {
  ideal = r / cap; printf "cap %d/s: pipeline wall %.2f s vs all requests / R = %d / %d = %.2f s: %+.1f%% (target within 10%%): %s\n",
    cap, w, r, cap, ideal, (w / ideal - 1) * 100, ((w / ideal - 1) ^ 2 <= 0.01 ? "met" : "NOT met");
  ideal = fr / cap; printf "cap %d/s: ds-fetch-feeds elapsed %.2f s vs its requests / R = %d / %d = %.2f s: %+.1f%%\n",
    cap, fe, fr, cap, ideal, (fe / ideal - 1) * 100 }'
echo "identical output lines at every concurrency and with the cap: $same"
