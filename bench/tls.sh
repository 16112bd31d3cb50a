#!/usr/bin/env bash
# bench/tls.sh — SIP over TLS against UDP: authenticated REGISTERs per
# second through the same switchboard-signaling on one core, with the same
# generator (target/release/register-bench). See bench/lib/tls.py; knobs are
# its flags (e.g. bench/tls.sh --connections 16 --rounds 5).
# BENCH_BUILD=0 skips the release build.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
command -v taskset >/dev/null || { echo "taskset missing (util-linux)" >&2; exit 1; }
if [ "${BENCH_BUILD:-1}" != 0 ]; then
  (cd "$ROOT" && cargo build --release -p switchboard-signaling -p switchboard-bench)
fi
exec python3 "$BENCH_DIR/lib/tls.py" "$@"
