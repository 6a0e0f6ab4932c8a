#!/usr/bin/env bash
# The daily snapshot as N shards side by side, with GNU parallel, on this machine or across hosts:
# each shard is `snapshot.sh --shard K/N` with its host's share of the API rate cap (docs/operations.md).
set -uo pipefail

usage() {
  cat <<'TXT'
Usage: pipelines/snapshot-sharded.sh N [--sshlogin LOGIN]... [--sshloginfile FILE] [--jobs J]
                                     [--remote-command CMD] [--dry-run] [snapshot.sh arguments...]
Runs shards 0/N ... N-1/N of the daily snapshot at the same time, each a full pipeline over its
part of the users (FNV-1a 64 of the DID mod N), with its own run-log row, run lock and lock file.
  N                      number of shards (1..4096)
  --sshlogin LOGIN       run shards on this host (GNU parallel's syntax, e.g. 2/user@host; ':' is
                         this machine); repeatable. Remote hosts need `make install` done and their
                         own configuration (/etc or ~/.env: DATABASE_URL ...); see docs/operations.md
  --sshloginfile FILE    the hosts, one per line (GNU parallel's --sshloginfile)
  --jobs J               shards at once per host (default N)
  --remote-command CMD   the pipeline on remote hosts (default: dopplersky-snapshot, from PATH)
  --dry-run              print the shard commands, run nothing
Every other argument goes to each shard's snapshot.sh (--all, --config FILE, --verbose ...).
--save-dir DIR becomes DIR/shard-K-of-N and --metrics-file PATH (or METRICS_FILE) becomes
PATH-shard-K-of-N.prom (PATH without .prom), so shards on one host never share a file.
RATE_LIMIT_RPS (default 10) is divided among the hosts: with H hosts each gets RATE_LIMIT_RPS / H
requests/s (decimals; 0 stays 0 = no cap), and the shards of one host share it through the host's
rate file (RATE_LIMIT_FILE), so one host's shards together stay within it. Settings sent along to remote hosts when set: BLUESKY_BASE_URL,
RATE_LIMIT_RPS, MAX_WORKERS, TIME_RANGE_DAYS, ACTIVE_DAYS, LOG_LEVEL, LOG_FORMAT,
PROGRESS_INTERVAL_S, DS_NOW; database settings are never sent (passwords stay on the hosts).
Exit code: the worst shard's (1 failed > 2 usage > 130 interrupted > 4 locked > 3 partial > 0).
TXT
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
n=$1; shift
[[ $n =~ ^[1-9][0-9]{0,3}$ ]] && [ "$n" -le 4096 ] || { echo "snapshot-sharded.sh: N must be 1..4096, not '$n'" >&2; exit 2; }
command -v parallel >/dev/null || { echo "snapshot-sharded.sh: GNU parallel not found (apt-get install parallel)" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# In the source tree the pipeline is snapshot.sh beside us; installed, dopplersky-snapshot.
if [ -x "$here/snapshot.sh" ]; then local_cmd=$here/snapshot.sh; else local_cmd=$here/dopplersky-snapshot; fi

ssh_args=() logins=() pass=() jobs=$n remote_cmd=dopplersky-snapshot dry=0 save_dir="" metrics=${METRICS_FILE:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --sshlogin|-S) [ $# -ge 2 ] || { echo "snapshot-sharded.sh: $1 needs a value" >&2; exit 2; }; ssh_args+=(--sshlogin "$2"); logins+=("$2"); shift ;;
    --sshloginfile) [ $# -ge 2 ] || { echo "snapshot-sharded.sh: $1 needs a file" >&2; exit 2; }; ssh_args+=(--sshloginfile "$2")
                    [ -r "$2" ] || { echo "snapshot-sharded.sh: cannot read --sshloginfile $2" >&2; exit 2; }
                    while read -r l; do [[ -z $l || $l == '#'* ]] || logins+=("$l"); done <"$2"; shift ;;
    --jobs|-j) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "snapshot-sharded.sh: --jobs needs a number" >&2; exit 2; }; jobs=$2; shift ;;
    --remote-command) [ $# -ge 2 ] || { echo "snapshot-sharded.sh: $1 needs a command" >&2; exit 2; }; remote_cmd=$2; shift ;;
    --dry-run) dry=1 ;;
    --save-dir) [ $# -ge 2 ] || { echo "snapshot-sharded.sh: --save-dir needs a directory" >&2; exit 2; }; save_dir=$2; shift ;;
    --metrics-file) [ $# -ge 2 ] || { echo "snapshot-sharded.sh: --metrics-file needs a path" >&2; exit 2; }; metrics=$2; shift ;;
    --shard) echo "snapshot-sharded.sh: --shard is set per shard; run snapshot.sh --shard K/N for a single one" >&2; exit 2 ;;
    -h|--help) usage; exit 0 ;;
    *) pass+=("$1") ;;
  esac
  shift
done

# Each host's share of the API rate cap: RATE_LIMIT_RPS / H exactly (the stages take decimals), so
# the hosts together never exceed the cap. The shards of one host need no further split: every
# fetching process there takes its request starts from one cadence (RATE_LIMIT_FILE, shared by
# user and base URL), so dividing by N as well would leave (N-1)/N of the host's budget unused.
# H counts distinct logins ("2/user@host" and "user@host" are one host; none given: this machine).
rps=${RATE_LIMIT_RPS:-10}
[[ $rps =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "snapshot-sharded.sh: RATE_LIMIT_RPS must be a number of requests/s, not '$rps'" >&2; exit 2; }
hosts=$(for l in "${logins[@]}"; do echo "${l#*/}"; done | sort -u | grep -c . || true)
[ "$hosts" -ge 1 ] || hosts=1
# Rounded down to a millionth (never up: the sum stays within the cap), and never to 0 = no cap.
share=$(awk -v r="$rps" -v n="$hosts" 'BEGIN {
  q = int(r * 1000000 / n) / 1000000; if (r > 0 && q == 0) q = 0.000001
  s = sprintf("%.6f", q); sub(/0+$/, "", s); sub(/[.]$/, "", s); print s }')
export RATE_LIMIT_RPS=$share
# Each shard must not see the unsplit METRICS_FILE: it gets its own --metrics-file below.
unset METRICS_FILE

env_args=()
for v in BLUESKY_BASE_URL RATE_LIMIT_RPS MAX_WORKERS TIME_RANGE_DAYS ACTIVE_DAYS LOG_LEVEL LOG_FORMAT PROGRESS_INTERVAL_S DS_NOW; do
  [ -n "${!v:-}" ] && env_args+=(--env "$v")
done

cmd=$local_cmd
[ ${#ssh_args[@]} -gt 0 ] && cmd=$remote_cmd
shard_args=(--shard "{}/$n")
[ -n "$save_dir" ] && shard_args+=(--save-dir "$save_dir/shard-{}-of-$n")
[ -n "$metrics" ] && shard_args+=(--metrics-file "${metrics%.prom}-shard-{}-of-$n.prom")

joblog=$(mktemp /tmp/dopplersky-sharded.XXXXXX)
trap 'rm -f "$joblog"' EXIT
dry_args=()
[ $dry = 1 ] && dry_args=(--dry-run)
echo "snapshot-sharded.sh: $n shards on $hosts host(s), $share requests/s per host${ssh_args:+, on ${ssh_args[*]}}" >&2
started=$(date +%s)
# -q quotes every argument for the shell parallel runs the command in (local or over ssh);
# --line-buffer keeps lines whole, --tagstring names the shard on each of them.
parallel -q --jobs "$jobs" --line-buffer --tagstring "shard {}/$n" --joblog "$joblog" \
  "${dry_args[@]}" "${ssh_args[@]}" "${env_args[@]}" \
  "$cmd" "${shard_args[@]}" "${pass[@]}" ::: $(seq 0 $(( n - 1 )))
prc=$?
[ $dry = 1 ] && exit $prc

# The joblog has one line per shard; column 7 is its exit code, 8 the signal that ended it.
rc=0 worst=0
rank() { case $1 in 0) echo 0 ;; 3) echo 1 ;; 4) echo 2 ;; 130) echo 3 ;; 2) echo 4 ;; *) echo 5 ;; esac; }
seen=0
while IFS=$'\t' read -r _seq _host _start _runtime _send _recv exitval signal _cmd; do
  [[ $exitval =~ ^[0-9]+$ ]] || continue
  seen=$(( seen + 1 ))
  code=$exitval
  [ "$signal" != 0 ] && code=1
  [ "$code" != 0 ] && echo "snapshot-sharded.sh: shard $(( _seq - 1 ))/$n exited with $code" >&2
  r=$(rank "$code")
  if [ "$r" -gt "$worst" ]; then worst=$r; rc=$code; [ "$r" = 5 ] && rc=1; fi
done < <(tail -n +2 "$joblog")
if [ "$seen" != "$n" ]; then
  echo "snapshot-sharded.sh: only $seen of $n shards ran (parallel exited $prc)" >&2
  rc=1
fi
echo "snapshot-sharded.sh: $n shards finished in $(( $(date +%s) - started ))s with exit code $rc" >&2
exit "$rc"
