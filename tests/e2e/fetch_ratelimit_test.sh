#!/usr/bin/env bash
# The fetch stages against rate limits, no database: a server enforcing R requests per window
# sees at most the one 429 the client starts into and none after, and a client cap of C requests/s
# holds as the server measures it; connections stay near the concurrency; several processes on
# one host share one cap through the rate file.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start fetch_ratelimit

# fetch NAME PORT CAP CONCURRENCY INPUT: profiles | feeds; output in $work/NAME.ndjson, exit codes in rc_NAME
fetch() {
  local name=$1 port=$2 cap=$3 conc=$4 input=$5
  local args=(--base-url "http://127.0.0.1:$port" --rate-limit "$cap" --concurrency "$conc" --max-attempts 4)
  set +e
  "$bin/ds-fetch-profiles" "${args[@]}" <"$input" 2>"$work/$name-profiles.log" \
    | "$bin/ds-fetch-feeds" "${args[@]}" >"$work/$name.ndjson" 2>"$work/$name-feeds.log"
  printf -v "rc_$name" '%s' "${PIPESTATUS[*]}"
  set -e
}
export LOG_LEVEL=info  # the client's rate-limit waits are logged at info, once each

# Small feeds (one page per user mostly): the requests, not the payloads, are what is measured.
users() { "$bin/ds-fake-appview" user-records --day 1 --users "$1" >"$work/users-$1.ndjson"; grep -c '"type":"user"' "$work/users-$1.ndjson"; }

step "server enforcing 30 requests per 3 s window; client cap 25/s, so the server is what binds"
limit=30 window=3 users=70
n_users=$(users $users)
start_fake strict --day 1 --users "$users" --posts-scale 0.05 --enforce-rate-limit --rate-limit $limit --rate-window-s $window
strict=http://127.0.0.1:$port_strict
# Start the client into a window already used up, with nearly all of it left: its first request
# is refused, and the test is that it is the only one. Wait for a window to begin, then use it up
# over one keep-alive connection (curl's URL globbing), which takes milliseconds.
reset_now() { curl -s -D - -o /dev/null "$strict/xrpc/app.bsky.actor.getProfiles?actors=x" | tr -d '\r' | awk -F': ' 'tolower($1) == "ratelimit-reset" {print $2}'; }
r0=$(reset_now)
for _ in $(seq 1 200); do [ "$(reset_now)" != "$r0" ] && break; sleep 0.05; done
curl -s "$strict/xrpc/app.bsky.actor.getProfiles?actors=[1-$limit]" >/dev/null
fake_reset "$port_strict"
fetch strict "$port_strict" 25 8 "$work/users-$users.ndjson"
fake_stats "$port_strict" >"$work/strict.stats"
check "both stages exit 0 ($rc_strict)" [ "$rc_strict" = "0 0" ]
s=$work/strict.stats
requests=$(jq '.requests.getProfiles + .requests.getAuthorFeed' "$s")
check "the run needed $requests requests, more than 2 windows' worth (else the limit never bound)" [ "$requests" -gt $((2 * limit)) ]
check "the server answered exactly one 429, the first request's ($(jq -c .statuses "$s"))" [ "$(jq .http_429 "$s")" = 1 ]
check "... and the client counted that one (profiles $(end_counter "$work/strict.ndjson" ds-fetch-profiles http_429), feeds $(end_counter "$work/strict.ndjson" ds-fetch-feeds http_429))" \
  [ "$(( $(end_counter "$work/strict.ndjson" ds-fetch-profiles http_429) + $(end_counter "$work/strict.ndjson" ds-fetch-feeds http_429) ))" = 1 ]
check "every user came through: no profile or feed failed" \
  [ "$(end_counter "$work/strict.ndjson" ds-fetch-profiles failed)/$(end_counter "$work/strict.ndjson" ds-fetch-feeds failed)/$(end_counter "$work/strict.ndjson" ds-fetch-feeds users)" = "0/0/$n_users" ]
check "the waits were logged once each, not per request ($(cat "$work"/strict-*.log | grep -c 'API rate limit') lines for $requests requests)" \
  [ "$(cat "$work"/strict-*.log | grep -c 'API rate limit')" -le $((requests / 3)) ]

step "server limit out of reach; client cap 25/s measured by the server"
cap=25 conc=8 users=200
n_users=$(users $users)
start_fake loose --day 1 --users "$users" --posts-scale 0.05 --enforce-rate-limit --rate-limit 1000000 --rate-window-s 60
fake_reset "$port_loose"
fetch loose "$port_loose" $cap $conc "$work/users-$users.ndjson"
fake_stats "$port_loose" >"$work/loose.stats"
l=$work/loose.stats
check "both stages exit 0 ($rc_loose)" [ "$rc_loose" = "0 0" ]
check "no 429 at all" [ "$(jq .http_429 "$l")" = 0 ]
# getAuthorFeed comes from ds-fetch-feeds alone, so its arrivals measure that stage's cap. The
# client spaces request starts 1/cap apart; the server's span can only come out shorter by how
# much later the first request arrived than the last, relative to their starts. 10% of a span of
# ~7 s is 0.7 s, far beyond any scheduling delay on loopback even on a loaded 2-core machine, so
# this cannot flake; a cap that did not hold would show up as 8x (the concurrency).
read -r n first last < <(jq -r '[.requests.getAuthorFeed, .arrivals.getAuthorFeed.first_ms, .arrivals.getAuthorFeed.last_ms] | @tsv' "$l")
rate=$(awk -v n="$n" -v a="$first" -v b="$last" 'BEGIN { printf "%.2f", (n - 1) * 1000 / (b - a) }')
check "server-measured getAuthorFeed rate $rate/s over $n requests stays within the cap $cap/s (+10%)" \
  awk -v r="$rate" -v c=$cap -v n="$n" 'BEGIN { exit !(n >= 150 && r <= c * 1.10) }'
conns=$(jq .connections_opened "$l")
check "$conns connections for $(jq '.requests.getProfiles + .requests.getAuthorFeed' "$l") requests: at most the two stages' concurrency ($conc each) + the stats request" \
  [ "$conns" -le $((2 * conc + 1)) ]
check "the stages report requests per 1000 users ($(end_counter "$work/loose.ndjson" ds-fetch-feeds requests_per_1000_users) for feeds)" \
  [ "$(end_counter "$work/loose.ndjson" ds-fetch-feeds requests_per_1000_users)" = $(( $(end_counter "$work/loose.ndjson" ds-fetch-feeds requests) * 1000 / n_users )) ]

step "one budget per host: two feed stages and a profile stage at once, measured at the server"
# Like a pipeline and a second shard on one host: every process is capped at $cap/s on its own, so
# without the shared rate file they would send about twice that together. RATE_LIMIT_FILE=none is
# the control that shows the measurement can fail.
cap=40
start_fake host --day 1 --users 200 --posts-scale 0.05 --enforce-rate-limit --rate-limit 1000000 --rate-window-s 60
host_args=(--base-url "http://127.0.0.1:$port_host" --rate-limit 0 --concurrency 8 --max-attempts 4)
"$bin/ds-fetch-profiles" "${host_args[@]}" <"$work/users-200.ndjson" >"$work/profiled.ndjson" 2>/dev/null \
  || die "profiles for the shared-budget runs"
# together RATE_FILE: the three processes at once; prints the server's rate over all endpoints.
together() {
  fake_reset "$port_host"
  local args=(--base-url "http://127.0.0.1:$port_host" --rate-limit $cap --concurrency 8 --max-attempts 4
              --rate-limit-file "$1") pids=() p
  "$bin/ds-fetch-feeds" "${args[@]}" <"$work/profiled.ndjson" >/dev/null 2>>"$work/together.log" & pids+=($!)
  "$bin/ds-fetch-feeds" "${args[@]}" <"$work/profiled.ndjson" >/dev/null 2>>"$work/together.log" & pids+=($!)
  "$bin/ds-fetch-profiles" "${args[@]}" <"$work/users-200.ndjson" >/dev/null 2>>"$work/together.log" & pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || die "a stage of the shared-budget run failed: $(tail -3 "$work/together.log")"; done
  fake_stats "$port_host" | jq -r '[([.requests[]] | add),
      ([.arrivals[] | select(.last_ms > 0) | .first_ms] | min), ([.arrivals[] | .last_ms] | max)] | @tsv' \
    | awk '{ printf "%d %.2f\n", $1, ($1 - 1) * 1000 / ($3 - $2) }'
}
read -r n shared < <(together "$work/rate-file")
check "sharing one rate file, the server measured $shared requests/s over $n requests: within one cap $cap/s (+10%)" \
  awk -v r="$shared" -v c=$cap -v n="$n" 'BEGIN { exit !(n >= 300 && r <= c * 1.10) }'
read -r n apart < <(together none)
check "control, each process on its own cap (RATE_LIMIT_FILE=none): $apart requests/s, more than 1.5 caps" \
  awk -v r="$apart" -v c=$cap 'BEGIN { exit !(r > c * 1.5) }'

step "done"
finish
