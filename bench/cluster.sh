#!/usr/bin/env bash
# bench/cluster.sh — Switchboard embedded (SQLite, no Redis/NATS) against
# Switchboard clustered (the shared Postgres, Redis and NATS JetStream on
# 127.0.0.1, each with names of its own, removed afterwards), one signaling
# process each: REGISTER and call rates, CPU per registration / call (and of
# the Redis, Postgres and NATS processes), lost CDRs, Redis memory per
# contact. See bench/lib/cluster.py for what is measured; knobs are its flags
# (e.g. bench/cluster.sh --duration 5 --max-seconds 60 --start 6000).
#
# BENCH_BUILD=0 skips the release build (make bench has just built it).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
command -v sipp >/dev/null || { echo "sipp missing: run bench/run.sh or scripts/ensure-deps.sh" >&2; exit 1; }
if [ "${BENCH_BUILD:-1}" != 0 ]; then
	mkdir -p "$BENCH_DIR/out"
	echo "== cargo build --release --workspace (log: bench/out/cargo-build.log)" >&2
	(cd "$ROOT" && cargo build --release --workspace) >"$BENCH_DIR/out/cargo-build.log" 2>&1 ||
		{ echo "cargo build failed: see bench/out/cargo-build.log" >&2; exit 1; }
fi
exec python3 "$BENCH_DIR/lib/cluster.py" "$@"
