#!/usr/bin/env bash
# Builds the libFuzzer targets with clang++ into build-fuzz and runs each for FUZZ_SECONDS (60),
# seeded with fuzz/seeds, fuzz/regressions, the real API captures and the test fixtures.
#
#   fuzz/run.sh                         # every target, FUZZ_SECONDS each (`make fuzz`)
#   FUZZ_TARGETS="timestamp" fuzz/run.sh
#
# Exit 1 when a target found a crash or a broken invariant: its input is in
# build-fuzz/crashes/TARGET/; once fixed, copy it to fuzz/regressions/TARGET/ (the unit tests
# replay that folder under g++). Needs clang and its runtime (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${FUZZ_TARGETS:-record_input author_feed get_profiles timestamp}
jobs=$(nproc 2>/dev/null || echo 2)

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (make fuzz installs it: scripts/deps.sh fuzz)" >&2; exit 2; }
cmake -S "$root/fuzz" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$jobs"

# Seeds made from the fixtures at run time (the corpora grow in build-fuzz, never in the tree).
# The 50-item capture is split into pages of 3 items: small inputs mutate much faster than 350 KB.
seeds=$build/fixture-seeds
rm -rf "$seeds"; mkdir -p "$seeds"/{record_input,author_feed,get_profiles,timestamp}
feed_capture=$(ls "$root"/tests/fixtures/bsky/getAuthorFeed.*.json | head -1)
cp "$root"/tests/fixtures/bsky/getProfiles.*.json "$seeds/get_profiles/"
if command -v jq >/dev/null; then
  n=$(jq '.feed | length' "$feed_capture")
  for ((i = 0; i < n; i += 3)); do
    jq -c "{feed: .feed[$i:$((i + 3))], cursor}" "$feed_capture" >"$seeds/author_feed/capture-$i.json"
  done
  jq -r '.. | objects | (.createdAt?, .indexedAt?) | strings' "$feed_capture" | sort -u | head -200 \
    | while read -r t; do printf '%s' "$t" >"$seeds/timestamp/$(printf '%s' "$t" | md5sum | cut -c1-12)"; done
else
  cp "$feed_capture" "$seeds/author_feed/"
fi
cp "$root"/tests/cli/golden/*.ndjson "$seeds/record_input/"

failed=()
for t in $targets; do
  corpus=$build/corpus/$t crashes=$build/crashes/$t
  mkdir -p "$corpus" "$crashes"
  echo "== fuzz $t for ${secs}s" >&2
  # The first directory collects new inputs; the others are read only. rss_limit: a stage reads a
  # 1 MiB line at most, anything near 2 GB is a leak.
  if ! "$build/${t}_fuzz" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$corpus" "$root/fuzz/seeds/$t" "$root/fuzz/regressions/$t" "$seeds/$t" \
      2>"$build/$t.log"; then
    failed+=("$t")
    grep -E "ERROR|Violation|SUMMARY|Test unit written" "$build/$t.log" | head -20 >&2
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$build/$t.log" | sed "s/^/  $t /" >&2 || true
  grep -E "cov: [0-9]+" "$build/$t.log" | tail -1 | sed "s/^/  $t /" >&2 || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/crashes/)" >&2
  exit 1
fi
echo "fuzz: every target ran ${secs}s without a crash" >&2
