#!/usr/bin/env bash
# bench/rtp.sh — RTP relay: switchboard-rtpmanager against rtpengine in
# userspace mode, one core each. See bench/lib/rtp.py for what is measured;
# knobs are its flags (e.g. bench/rtp.sh --seconds 5 --targets switchboard).
#
# Installs rtpengine (Debian package rtpengine-daemon) when it is missing and
# builds the relay and the load generator (BENCH_BUILD=0 skips the build).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
if ! command -v rtpengine >/dev/null; then
  echo "== installing rtpengine (Debian package rtpengine-daemon)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q rtpengine-daemon >/dev/null \
    || echo "rtpengine could not be installed: only switchboard is measured" >&2
fi
command -v taskset >/dev/null || { echo "taskset missing (util-linux)" >&2; exit 1; }
if [ "${BENCH_BUILD:-1}" != 0 ]; then
  (cd "$ROOT" && cargo build --release -p switchboard-rtpmanager -p switchboard-bench)
fi
exec python3 "$BENCH_DIR/lib/rtp.py" "$@"
