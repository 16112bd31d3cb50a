#!/usr/bin/env bash
# bench/calls.sh — call load: Switchboard's B2BUA against Kamailio 5.6 as a
# stateful proxy (bench/kamailio/proxy.cfg), sipp's built-in uac/uas, no
# media. See bench/lib/calls.py for what is measured; knobs are its flags
# (e.g. bench/calls.sh --duration 5 --max-seconds 60 --targets switchboard).
#
# Run after bench/run.sh (make bench does), which installs kamailio and
# sip-tester when they are missing; this script only checks for them.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v sipp >/dev/null || { echo "sipp missing: run bench/run.sh or scripts/ensure-deps.sh" >&2; exit 1; }
command -v kamailio >/dev/null || echo "kamailio missing: only switchboard is measured (bench/run.sh installs it)" >&2
exec python3 "$BENCH_DIR/lib/calls.py" "$@"
