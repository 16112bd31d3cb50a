#!/usr/bin/env bash
# bench/soak.sh — `make soak`: Switchboard under steady call load for
# SOAK_SECONDS (default 600), with media on a share of the calls, callers
# that vanish without BYE, and a signaling restart in the middle; then 0
# live calls, 0 RTP manager sessions, flat memory and one CDR per answered
# call are checked. See bench/lib/soak.py. Not part of `make test`.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v sipp >/dev/null || { echo "sipp missing: run scripts/ensure-deps.sh" >&2; exit 1; }
exec python3 "$BENCH_DIR/lib/soak.py" "$@"
