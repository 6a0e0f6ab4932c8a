#!/usr/bin/env bash
# Fetching through a misbehaving API: with 5% 429s, 3% 5xx, 1% truncated bodies and 1% dropped
# connections injected, a day-1 then day-2 run leaves the database exactly as a clean run does;
# connections stay near the concurrency; a 400 "Profile not found" is not retried, a 503 is, boundedly.
set -euo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start fetch_faults
seed=7 users=60
# The fault draws are a hash of this seed and each request (tools/fake-appview/README.md), so a
# run meets the same faults every time; with this one every kind happens (429 x 15, 5xx x 6,
# truncated x 2, cut x 1, dropped x 3 over the two days). Any seed must give the same database.
fault_seed=${FAULT_SEED:-5}

start_cluster

export RATE_LIMIT_RPS=0 LOG_LEVEL=${LOG_LEVEL:-warning} MAX_WORKERS=10
workers=$MAX_WORKERS

step "two databases registering the same users"
migrate
seed_users
psql_q -d "$(base_url_of postgres)" -c "CREATE DATABASE faulty TEMPLATE dopplersky"
clean_db=$url faulty_db=$(base_url_of faulty)

start_fake clean --day 1 --seed "$seed" --users "$users"
# 5% 429 (Retry-After 1 s), 3% 5xx, 1% truncated bodies (half cut with a matching
# Content-Length, half by a connection closed mid-body), 1% connections dropped without an answer.
start_fake faulty --day 1 --seed "$seed" --users "$users" --fault-seed "$fault_seed" --retry-after-s 1 \
  --p-429 0.05 --p-5xx 0.03 --p-truncated 0.005 --p-cut 0.005 --p-drop 0.01

# run_day NAME DAY DB: one pipeline run against fake NAME, its output kept in $work/NAME-dDAY.
run_day() {
  local name=$1 day=$2 db=$3 port_var="port_$1" rc=0
  local port=${!port_var}
  fake_day "$port" "$day"
  fake_reset "$port"
  BLUESKY_BASE_URL="http://127.0.0.1:$port" DATABASE_URL=$db DS_NOW=$(day_now "$day") DS_LOCK_FILE="$work/$name.lock" \
    "$src/pipelines/snapshot.sh" --save-dir "$work/$name-d$day" 2>"$work/$name-d$day.log" || rc=$?
  fake_stats "$port" >"$work/$name-d$day.stats"
  return $rc
}

for day in 1 2; do
  step "day $day: a clean run and, beside it, the same day through faults"
  days=$([ "$day" = 1 ] && echo 1 || echo 1,2)
  run_day clean "$day" "$clean_db" &
  clean_pid=$!
  # Eight attempts with 50 ms first backoff: ten percent of faults fail a request eight times in
  # a row with probability 1e-8, and the draws are fixed by the seed anyway.
  rc=0 clean_rc=0
  HTTP_MAX_ATTEMPTS=8 HTTP_RETRY_BACKOFF_MS=50 run_day faulty "$day" "$faulty_db" || rc=$?
  wait "$clean_pid" || clean_rc=$?
  echo "   [${SECONDS}s]" >&2
  check "day $day clean run completes" [ "$clean_rc" = 0 ]
  check "day $day run through faults completes with exit 0 (no user failed)" [ "$rc" = 0 ]
  [ "$rc" = 0 ] || tail -20 "$work/faulty-d$day.log" >&2
  # The clean run's database is the dataset's truth (pipeline_e2e_test checks that row by row);
  # the faulty one is checked against both.
  check "day $day faulty database matches the dataset's truth" e2e_check --db "$faulty_db" --days "$days" --runs "$day"
  dump_state "$clean_db" >"$work/clean-d$day.state"
  dump_state "$faulty_db" >"$work/faulty-d$day.state"
  if diff -q "$work/clean-d$day.state" "$work/faulty-d$day.state" >/dev/null; then
    ok "day $day: the faulty run left exactly the clean run's database ($(wc -l <"$work/clean-d$day.state") rows)"
  else
    diff "$work/clean-d$day.state" "$work/faulty-d$day.state" | head -20 >&2
    bad "day $day: the faulty run's database differs from the clean run's"
  fi

  # The client retried through the faults and counted them.
  f=$work/faulty-d$day.stats
  feeds_end=$work/faulty-d$day/3-feeds.ndjson
  retries=$(( $(end_counter "$feeds_end" ds-fetch-profiles retries) + $(end_counter "$feeds_end" ds-fetch-feeds retries) ))
  check "day $day: the stages retried ($retries) after $(jq '[.faults[]] | add' "$f") faults" [ "$retries" -ge 1 ]
  check "day $day: no feed failed" [ "$(end_counter "$feeds_end" ds-fetch-feeds failed)" = 0 ]
  check "day $day: no profile failed" [ "$(end_counter "$feeds_end" ds-fetch-profiles failed)" = 0 ]
  # What the stages counted agrees with what the server saw.
  server_requests=$(jq '.requests.getProfiles + .requests.getAuthorFeed + (.requests.getPosts // 0)' "$f")
  client_requests=$(( $(end_counter "$feeds_end" ds-fetch-profiles requests) + $(end_counter "$feeds_end" ds-fetch-feeds requests) ))
  dropped=$(jq '.faults.dropped' "$f")
  # libcurl re-sends a request by itself when a reused connection dies before any answer; the
  # server sees those, the client does not count them.
  check "day $day: server saw the client's $client_requests requests (+ at most $dropped silent resends): $server_requests" \
    [ "$server_requests" -ge "$client_requests" -a "$server_requests" -le $((client_requests + dropped)) ]
  check "day $day: server 429s ($(jq .http_429 "$f")) = client 429s" \
    [ "$(jq .http_429 "$f")" = $(( $(end_counter "$feeds_end" ds-fetch-profiles http_429) + $(end_counter "$feeds_end" ds-fetch-feeds http_429) )) ]

  # Economy: skip_user accounts never reach the fetch stages (so cost no request), and each stage
  # reports what it spent.
  skipped=$(psql_q -d "$clean_db" -c "SELECT did FROM users WHERE skip_user")
  sent=$(jq -r 'select(.type == "user") | .did' "$work/clean-d$day/1-users.ndjson")
  check "day $day: none of the $(echo "$skipped" | wc -w) skip_user accounts was sent to the fetch stages" \
    [ -n "$skipped" -a -z "$(comm -12 <(echo "$skipped" | sort) <(echo "$sent" | sort))" ]
  for st in ds-fetch-profiles ds-fetch-feeds; do
    check "day $day: $st reports requests, retries, http_429, bytes and requests_per_1000_users" \
      jq -se --arg s "$st" 'map(select(.type == "end" and .stage == $s)) | last | .counters
        | (.requests > 0 and .bytes > 0 and .retries >= 0 and .http_429 >= 0 and .requests_per_1000_users > 0)' \
      "$work/faulty-d$day/3-feeds.ndjson" >/dev/null
  done

  # Connections: near the concurrency (two stages, MAX_WORKERS each, plus the stats request),
  # not near the request count; broken connections are replaced one for one.
  c=$work/clean-d$day.stats
  conns=$(jq .connections_opened "$c") reqs=$(jq '.requests.getProfiles + .requests.getAuthorFeed' "$c")
  check "day $day clean: $conns connections for $reqs requests (<= 2 x $workers + 1)" [ "$conns" -le $((2 * workers + 1)) -a "$reqs" -ge $((3 * conns)) ]
  conns=$(jq .connections_opened "$f") broken=$(jq '.faults.cut + .faults.dropped' "$f")
  check "day $day faulty: $conns connections (<= 2 x $workers + 1 + $broken broken)" [ "$conns" -le $((2 * workers + 1 + broken)) ]
done

# Every kind of fault happened (over both days: day 2 needs few requests). Truncated bodies
# come in two flavours, 0.5% each.
for kind in http_429 http_5xx 'truncated + .faults.cut' dropped; do
  n=$(jq -s "map(.faults.$kind) | add" "$work/faulty-d1.stats" "$work/faulty-d2.stats")
  check "faults injected: ${kind/ + .faults./ + } x $n" [ "$n" -ge 1 ]
done

step "retry policy at stage level: 400 Profile not found once, 503 up to --max-attempts"
mkdir -p "$work/files/getAuthorFeed" "$work/files/getProfiles"
echo 503 >"$work/files/getAuthorFeed/did:plc:down.status"
echo '{"error":"InternalServerError","message":"down"}' >"$work/files/getAuthorFeed/did:plc:down.json"
echo 503 >"$work/files/getProfiles/default.status"
start_fake files --serve-files "$work/files"
user_rec() {  # user_rec DID: a user record with its profile fetched
  jq -nc --arg did "$1" '{type:"user",did:$did,handle:"x.test",displayName:null,avatar:null,asOf:"2026-11-02T06:00:00.000Z",
    since:null,baseline:{posts:0,likes:0,replies:0,quotes:0,reposts:0},profileStatus:"ok",
    profile:{handle:"x.test",displayName:null,avatar:null,followers:0,following:0,posts:0}}'
}
profiles_end='{"type":"end","stage":"ds-fetch-profiles","contract":1,"counters":{"users":2},"elapsed_s":0.1}'
rc=0
{ user_rec did:plc:gone; user_rec did:plc:down; echo "$profiles_end"; } \
  | "$bin/ds-fetch-feeds" --base-url "http://127.0.0.1:$port_files" --max-attempts 3 --retry-backoff-ms 10 \
      >"$work/files-feeds.ndjson" 2>"$work/files-feeds.log" || rc=$?
check "feeds with a failed user exit 3 (partial)" [ "$rc" = 3 ]
feed_of() { jq -r --arg d "$1" "select(.type == \"user\" and .did == \$d) | .feed.$2" "$work/files-feeds.ndjson"; }
check "400 Profile not found: gone after 1 request" [ "$(feed_of did:plc:gone status)/$(feed_of did:plc:gone requests)" = gone/1 ]
check "503: failed after exactly 3 requests (--max-attempts 3)" [ "$(feed_of did:plc:down status)/$(feed_of did:plc:down requests)" = failed/3 ]
fake_stats "$port_files" >"$work/files.stats"
check "the server saw 1 x 400 and 3 x 503 for getAuthorFeed" \
  [ "$(jq -c '[.requests.getAuthorFeed, .statuses["400"], .statuses["503"]]' "$work/files.stats")" = "[4,1,3]" ]
fake_reset "$port_files"
rc=0
# A file, not a pipe: all users are there at once, so the batches are exactly 25 + the rest.
"$bin/ds-fake-appview" user-records --users 30 >"$work/users30.ndjson"
n=$(grep -c '"type":"user"' "$work/users30.ndjson")
"$bin/ds-fetch-profiles" --base-url "http://127.0.0.1:$port_files" --max-attempts 4 --retry-backoff-ms 10 \
  <"$work/users30.ndjson" >"$work/files-profiles.ndjson" 2>"$work/files-profiles.log" || rc=$?
check "profiles with a failing batch exit 3 (partial)" [ "$rc" = 3 ]
check "getProfiles batches answered 503 are retried 4 times each, then all $n users are marked failed, none dropped" \
  [ "$(jq -sc '[.[] | select(.type == "user") | .profileStatus] | group_by(.) | map([.[0], length])' "$work/files-profiles.ndjson")/$(fake_stats "$port_files" | jq .requests.getProfiles)" = "[[\"failed\",$n]]/$(( (n + 24) / 25 * 4 ))" ]

step "done"
finish
