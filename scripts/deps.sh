#!/usr/bin/env bash
# Installs the Debian packages the project builds, tests and demos with, when any is missing.
# Quick when everything is present (one dpkg query); needs root (or sudo) only to install.
#   scripts/deps.sh          # build, test, demo, bench
#   scripts/deps.sh fuzz     # also clang and its libFuzzer runtime (make fuzz)
#   scripts/deps.sh report-test  # also Debian's chromium, for the test that renders ds-report's page
#   scripts/deps.sh appview  # also what tests/appview needs from Debian (make test-appview)
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libsimdjson-dev libcli11-dev libspdlog-dev libfmt-dev catch2 libcpp-httplib-dev
  libpq-dev libcurl4-openssl-dev
  postgresql postgresql-client
  jq procps util-linux curl parallel
)
# libFuzzer is clang's; Debian ships its runtime apart from the compiler.
[ "${1:-}" = fuzz ] && packages+=(clang libclang-rt-dev)
# Headless Chromium renders ds-report's page to a PNG in tests/e2e/report_e2e_test.sh; python3
# (Debian's) checks the HTML and the picture; a font so that the text has glyphs.
[ "${1:-}" = report-test ] && packages+=(chromium python3 fonts-dejavu-core)
# The real-AppView suite (tests/appview): its Node 22 comes from the npm registry (node-env.sh),
# checked with openssl; node-gyp builds better-sqlite3 with python3 and the compilers above.
[ "${1:-}" = appview ] && packages+=(python3 openssl)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Debian's postgresql package starts a system cluster where it can; ours are private, so that one
# is left alone and does not matter.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
