#!/usr/bin/env bash
# Runs a command with a fresh private PostgreSQL cluster: DS_TEST_DATABASE_URL and DATABASE_URL point
# at its "dopplersky" database. The cluster and its directory are removed afterwards, pass or fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/ds-pg.XXXXXX)
cleanup() { "$here/pg-cluster.sh" stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT
url=$("$here/pg-cluster.sh" start "$dir")
export DS_TEST_DATABASE_URL="$url" DATABASE_URL="$url" DS_TEST_PG_DIR="$dir"
"$@"
