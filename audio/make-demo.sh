#!/usr/bin/env bash
# Regenerates audio/demo.wav: espeak-ng speaks the text, sox converts it to
# 8 kHz mono 16-bit PCM (what the RTP manager sends without resampling).
set -euo pipefail
cd "$(dirname "$0")"
raw=$(mktemp --suffix=.wav)
trap 'rm -f "$raw"' EXIT
espeak-ng -v en-us -s 150 -w "$raw" \
  "Welcome to Switchboard. Your call is anchored on the media server, and this prompt was played from a wave file. Goodbye."
sox "$raw" -r 8000 -c 1 -b 16 demo.wav
