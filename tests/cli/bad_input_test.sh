#!/usr/bin/env bash
# Every stage that reads records from stdin, fed every kind of bad line (one table for all): one
# stderr line naming the stage, the input, the line and the problem with an excerpt; the count in
# the stage's end record (ds-load: snapshot_logs); exit 3 (1 with --strict, 0 for empty input);
# the good records before and after the bad line come through. Also: a world-readable .env warns.
set -uo pipefail
. "$(dirname "$0")/../scripts/e2e-lib.sh"
e2e_start bad_input

# --- servers: the fake AppView (loopback) for the fetch stages, a private cluster for ds-load ---
seed=3 users=24
start_fake fake --day 1 --seed $seed --users $users
start_cluster
export BLUESKY_BASE_URL="http://127.0.0.1:$port_fake" RATE_LIMIT_RPS=0 LOG_LEVEL=info
export DS_NOW=2026-11-02T06:00:00Z
unset LOG_FORMAT
migrate
"$bin/ds-fake-appview" seed-sql --day 1 --seed $seed --users $users >"$work/seed.sql"
psql_q -d "$url" -f "$work/seed.sql" >/dev/null || die "seeding users"
# Accounts 3 (no posts) and 4 (only reposts): one cheap request each.
did_of() { grep -o "('did:plc:[a-z0-9]*', 'user000$1.fake.test'" "$work/seed.sql" | cut -d"'" -f2; }
did3=$(did_of 3) did4=$(did_of 4)
[ -n "$did3" ] && [ -n "$did4" ] || die "no DIDs in the fake dataset's seed"

# --- records ---
profile='"profileStatus":"ok","profile":{"handle":"h.test","displayName":null,"avatar":null,"followers":1,"following":2,"posts":0}'
user_rec() {  # DID HANDLE [MORE_FIELDS]
  printf '{"type":"user","did":"%s","handle":"%s","displayName":null,"avatar":null,"asOf":"%s","since":null,"baseline":{"posts":0,"likes":0,"replies":0,"quotes":0,"reposts":0}%s}\n' \
    "$1" "$2" "$DS_NOW" "${3:+,$3}"
}
end_rec() { printf '{"type":"end","stage":"%s","contract":1,"counters":{"users":1},"elapsed_s":0}\n' "$1"; }
post_rec() {  # URI DID LIKES
  printf '{"type":"post","uri":"%s","did":"%s","createdAt":"2026-11-01T10:00:00.000Z","sortAt":"2026-11-01T10:00:00.000Z","likes":%s,"replies":0,"quotes":0,"reposts":0}\n' "$1" "$2" "$3"
}

# Per stage: the good records before and after the bad line, and the upstream end records.
good_before() {
  case $1 in
    ds-fetch-profiles) user_rec "$did3" user0003.fake.test ;;
    ds-fetch-feeds) user_rec "$did3" user0003.fake.test "$profile" ;;
    ds-aggregate) post_rec "at://did:plc:agg/app.bsky.feed.post/1" did:plc:agg 5 ;;
    ds-load) post_rec "at://$did3/app.bsky.feed.post/$2" "$did3" 7 ;;
  esac
}
good_after() {
  case $1 in
    ds-fetch-profiles) user_rec "$did4" user0004.fake.test ;;
    ds-fetch-feeds) user_rec "$did4" user0004.fake.test "$profile" ;;
    ds-aggregate) user_rec did:plc:agg agg.test "$profile"',"feed":{"status":"complete","pages":1,"posts":1,"requests":1,"error":null}' ;;
    ds-load) printf '{"type":"snapshot","did":"%s","date":"2026-11-02","followers":1,"following":2,"posts":3,"likes":%s,"replies":0,"quotes":0,"reposts":0}\n' "$did3" "$3" ;;
  esac
}
upstream_of() {
  case $1 in
    ds-fetch-profiles) echo ds-select-users ;;
    ds-fetch-feeds) echo ds-select-users ds-fetch-profiles ;;
    ds-aggregate) echo ds-select-users ds-fetch-profiles ds-fetch-feeds ;;
    ds-load) echo ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ;;
  esac
}
# Did the good records make it? ds-load: into the database.
check_good() {  # STAGE CASE OUT
  local stage=$1 id=$2 out=$3
  case $stage in
    ds-fetch-profiles)
      [ "$(grep -c '"profileStatus":"ok"' "$out")" = 2 ] && ok || bad "$stage $id: good users before/after not both fetched: $(head -c 300 "$out")" ;;
    ds-fetch-feeds)
      [ "$(grep -c '"feed":{"status":"complete"' "$out")" = 2 ] && ok || bad "$stage $id: good users before/after not both complete: $(head -c 300 "$out")" ;;
    ds-aggregate)
      grep -q '"type":"post","uri":"at://did:plc:agg/' "$out" && grep -q '"type":"snapshot","did":"did:plc:agg","date":"2026-11-02".*"likes":5,' "$out" \
        && ok || bad "$stage $id: the post before and the snapshot of the user after are not both there: $(head -c 300 "$out")" ;;
    ds-load)
      [ "$(q "SELECT likes FROM posts WHERE uri = 'at://$did3/app.bsky.feed.post/$id'")" = 7 ] && ok || bad "$stage $id: the post before the bad line was not stored"
      [ "$(q "SELECT likes FROM snapshots WHERE did = '$did3' AND date = '2026-11-02'")" = "$case_no" ] && ok || bad "$stage $id: the snapshot after the bad line was not stored" ;;
  esac
}

# --- the table of bad lines: id | problem (regex) | the line's bytes (printf format) ---
# The bytes go to files because a NUL cannot live in a shell variable. Every bad line carries its
# case id near the start, so the excerpt in the message can be checked.
declare -A problem
mkcase() { local id=$1; problem[$id]=$2; shift 2; printf "$@" >"$work/case-$id"; }
mkcase c01 'malformed JSON' '{"type":"note","case":"c01","n":}\n'
mkcase c02 'malformed JSON' '{"case":"c02" oops\n'
mkcase c03 'record has no "type"' '{"case":"c03","uri":"at://x"}\n'
mkcase c04 'field "type" must be a string' '{"type":7,"case":"c04"}\n'
mkcase c05 'line longer than 1 MiB' '{"type":"note","case":"c05","pad":"%s"}\n' "$(head -c 1100000 /dev/zero | tr '\0' x)"
mkcase c06 'invalid UTF-8' '{"type":"note","case":"c06","s":"\xff\xfe"}\n'
mkcase c07 'NUL byte' '{"type":"note","case":"c07","s":"a\0b"}\n'
mkcase c08 'malformed JSON.*no newline' '{"type":"note","case":"c08","s":"trunc'  # last, no newline
mkcase c09 'malformed JSON \(text after the object\)|malformed JSON' '{"type":"note","case":"c09"} trailing\n'
# Typed cases: a record of the type the stage decodes (user for the fetch stages, post after).
typed_case() {  # STAGE ID -> the bad line on stdout
  local typed=post
  case $1 in ds-fetch-*) typed=user ;; esac
  case $typed:$2 in
    user:t1) printf '{"type":"user","case":"t1","did":5,"handle":"x.test","asOf":"%s","since":null}\n' "$DS_NOW" ;;
    user:t2) printf '{"type":"user","case":"t2","did":"did:plc:x","handle":"x.test","since":null}\n' ;;
    user:t3) printf '{"type":"user","case":"t3","did":"did:plc:x","handle":"x.test","asOf":"%s","since":null,"baseline":{"likes":99999999999999999999}}\n' "$DS_NOW" ;;
    user:t4) printf '{"type":"user","case":"t4","did":"did:plc:x","handle":"x.test","asOf":"%s","since":null,"baseline":{"likes":-1}}\n' "$DS_NOW" ;;
    user:t5) printf '{"type":"user","case":"t5","did":"did:plc:x","handle":"x.test","asOf":"not a time","since":null}\n' ;;
    post:t1) printf '{"type":"post","case":"t1","uri":"at://x/p","did":"did:plc:x","createdAt":"2026-11-01T00:00:00Z","likes":"3"}\n' ;;
    post:t2) printf '{"type":"post","case":"t2","uri":"at://x/p","did":"did:plc:x"}\n' ;;
    post:t3) printf '{"type":"post","case":"t3","uri":"at://x/p","did":"did:plc:x","createdAt":"2026-11-01T00:00:00Z","likes":99999999999999999999}\n' ;;
    post:t4) printf '{"type":"post","case":"t4","uri":"at://x/p","did":"did:plc:x","createdAt":"2026-11-01T00:00:00Z","likes":-1}\n' ;;
    post:t5) printf '{"type":"post","case":"t5","uri":"at://x/p","did":"did:plc:x","createdAt":"2026-13-01T00:00:00Z"}\n' ;;
  esac
}
problem[t1]='field "(did|likes)" must be (a string|an integer)'
problem[t2]='missing field "(asOf|createdAt)"'
problem[t3]='field "(likes|baseline.likes)" must be an integer in range|field "likes" must be an integer in range'
problem[t4]='field "likes" must not be negative'
problem[t5]='field "(asOf|createdAt)" is not an RFC 3339 timestamp'
cases=(c01 c02 c03 c04 c05 c06 c07 c09 t1 t2 t3 t4 t5 c08)

# --- the runs ---
case_no=0
for stage in ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load; do
  ends=$(for s in $(upstream_of $stage); do end_rec "$s"; done)
  n_ends=$(printf '%s\n' "$ends" | wc -l)
  for id in "${cases[@]}"; do
    case_no=$((case_no + 1))
    in="$work/in" out="$work/out" err="$work/err"
    if [ "${id:0:1}" = t ]; then typed_case $stage "$id" >"$work/case-$id"; fi
    if [ "$id" = c08 ]; then  # the truncated last line: after everything else
      { good_before $stage "$id"; good_after $stage "$id" $case_no; printf '%s\n' "$ends"; cat "$work/case-$id"; } >"$in"
      line=$((3 + n_ends))
    else
      { good_before $stage "$id"; cat "$work/case-$id"; good_after $stage "$id" $case_no; printf '%s\n' "$ends"; } >"$in"
      line=2
    fi
    what="$stage $id (${problem[$id]})"

    timeout 60 "$bin/$stage" <"$in" >"$out" 2>"$err"; rc=$?
    [ $rc = 3 ] && ok || bad "$what: exit $rc, want 3; stderr: $(tail -c 400 "$err")"
    n=$(grep -c 'stdin:' "$err")
    [ "$n" = 1 ] && ok || bad "$what: $n stderr lines name the input, want 1: $(grep 'stdin:' "$err" | head -c 600)"
    grep -qE "^[0-9T:.-]+Z $stage error: stdin:$line: (${problem[$id]}).*: .*\"case\":\"$id\"" "$err" \
      && ok || bad "$what: no 'stage error: stdin:$line: problem: excerpt' line in: $(grep 'stdin:' "$err" | head -c 400)"
    if [ $stage = ds-load ]; then
      [ "$(q "SELECT status || ' ' || bad_lines FROM snapshot_logs ORDER BY id DESC LIMIT 1")" = "partial 1" ] \
        && ok || bad "$what: run not recorded partial with bad_lines 1: $(q "SELECT status, bad_lines, error FROM snapshot_logs ORDER BY id DESC LIMIT 1")"
    else
      grep "\"type\":\"end\",\"stage\":\"$stage\"" "$out" | grep -q '"bad_lines":1[,}]' \
        && ok || bad "$what: the stage's end record does not count bad_lines 1: $(tail -1 "$out" | head -c 400)"
      # Nothing half-baked downstream: every output line is whole JSON (jq reads them one by one).
      jq -e . "$out" >/dev/null 2>&1 && ok || bad "$what: stdout is not whole JSON lines"
    fi
    check_good $stage "$id" "$out"

    # --strict: stop at the bad line, exit 1, the same message.
    timeout 60 "$bin/$stage" --strict <"$in" >"$out" 2>"$err"; rc=$?
    [ $rc = 1 ] && ok || bad "$what --strict: exit $rc, want 1"
    grep -qE "$stage error: stdin:$line: (${problem[$id]})" "$err" && ok || bad "$what --strict: the bad line is not named: $(head -c 400 "$err")"
    grep -q "\"type\":\"end\",\"stage\":\"$stage\"" "$out" && bad "$what --strict: wrote its end record after stopping" || ok
    if [ $stage = ds-load ]; then
      [ "$(q "SELECT status FROM snapshot_logs ORDER BY id DESC LIMIT 1")" = failed ] && ok || bad "$what --strict: run not recorded failed"
    fi
  done

  # An empty stream: nothing out, nothing wrong. ds-load records such a run failed (no upstream
  # end records: the upstream died before writing anything), with the reason.
  timeout 60 "$bin/$stage" </dev/null >"$work/out" 2>"$work/err"; rc=$?
  [ -s "$work/out" ] && bad "$stage empty stream wrote: $(head -c 200 "$work/out")" || ok
  grep -q 'stdin:' "$work/err" && bad "$stage empty stream complained about a line: $(cat "$work/err")" || ok
  if [ $stage = ds-load ]; then
    [ $rc = 1 ] && ok || bad "ds-load empty stream: exit $rc, want 1 (no end records)"
    q "SELECT error FROM snapshot_logs ORDER BY id DESC LIMIT 1" | grep -q "without the end records of ds-select-users" \
      && ok || bad "ds-load empty stream: the run's error does not name the missing end records"
  else
    [ $rc = 0 ] && ok || bad "$stage empty stream: exit $rc, want 0"
  fi
done

# A .env readable by others may expose DB_PASSWORD: warn, and not when it is private.
printf 'LOG_LEVEL=info\n' >"$work/cfg.env"
chmod 644 "$work/cfg.env"
"$bin/ds-aggregate" --config "$work/cfg.env" </dev/null >/dev/null 2>"$work/err"
grep -q "cfg.env is readable by other users" "$work/err" && ok || bad "a world-readable --config file gave no warning: $(cat "$work/err")"
chmod 600 "$work/cfg.env"
"$bin/ds-aggregate" --config "$work/cfg.env" </dev/null >/dev/null 2>"$work/err"
grep -q "readable by other users" "$work/err" && bad "a private --config file was warned about" || ok

# A database that cannot be reached: the error names where, never the password (URL, conninfo
# string or the original's DB_PASSWORD), and no run's --help shows one either.
secret=pw-Xy7-secret
for how in "DATABASE_URL=postgresql://postgres:$secret@127.0.0.1:9/none" \
           "DATABASE_URL=host=127.0.0.1 port=9 user=postgres password=$secret dbname=none" \
           "DB_HOST=127.0.0.1 DB_PORT=9 DB_USER=postgres DB_PASSWORD=$secret DB_NAME=none"; do
  env -u DATABASE_URL $how DB_CONNECT_TIMEOUT=2 "$bin/ds-select-users" --health >"$work/out" 2>"$work/err"; rc=$?
  [ $rc = 5 ] && ok || bad "unreachable database ($how): ds-select-users --health exit $rc, want 5"
  grep -q "127.0.0.1" "$work/err" && ok || bad "unreachable database ($how): the error does not say where: $(cat "$work/err")"
  grep -q "$secret" "$work/err" "$work/out" && bad "the password reached the log ($how): $(cat "$work/err")" || ok
  env -u DATABASE_URL $how DB_CONNECT_TIMEOUT=2 "$bin/ds-load" </dev/null >"$work/out" 2>"$work/err"
  grep -q "$secret" "$work/err" "$work/out" && bad "ds-load logged the password ($how): $(cat "$work/err")" || ok
done
for p in ds-select-users ds-fetch-profiles ds-fetch-feeds ds-aggregate ds-load ds-migrate; do
  env DATABASE_URL="postgresql://postgres:$secret@127.0.0.1:9/none" DB_PASSWORD=$secret "$bin/$p" --help >"$work/out" 2>&1
  grep -q "$secret" "$work/out" && bad "$p --help shows the password" || ok
done

finish
