#!/usr/bin/env bash
# Rebuilds crates/ui/assets/jssip-<version>.min.js, the browser phone's SIP
# stack: the npm package `jssip` with its dependencies (debug, events, ms,
# sdp-transform; all MIT) bundled into one browser script by esbuild. Run by
# hand when JsSIP is upgraded (then change JSSIP_VERSION in
# crates/ui/src/lib.rs); the build and the tests use the committed file and
# need neither npm nor the network.
set -euo pipefail
version=${1:-3.13.8}
out="$(cd "$(dirname "$0")/.." && pwd)/crates/ui/assets/jssip-$version.min.js"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "jssip@$version" esbuild@0.25
echo "window.JsSIP = require('jssip');" > entry.js
npx esbuild entry.js --bundle --minify --format=iife --target=es2019 \
  --legal-comments=inline --outfile="$out"
echo "wrote $out"
