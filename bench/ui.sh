#!/usr/bin/env bash
# bench/ui.sh — the dashboard: time to render each page of switchboard-ui
# with 10,000 registrations and 100,000 CDRs behind it, and its memory.
#
# On 127.0.0.1 only, in a temp dir:
#   1. cdr-seed (crates/bench) writes BENCH_UI_CDRS CDRs into a fresh SQLite
#      store through the store's API, before signaling opens it;
#   2. release switchboard-signaling on that DATA_DIR; BENCH_UI_USERS users
#      created over its REST API, then registered for real by sipp
#      (bench/sipp/register_auth.xml, digest auth, Expires 3600);
#   3. release switchboard-ui pointed at it; bench/lib/ui.py logs in and
#      times every page (see there), prints p50/p99/max per page, both
#      processes' VmRSS/VmHWM, and PASS/FAIL against p99 <= 50 ms.
#
# Knobs (environment): BENCH_UI_USERS=10000 BENCH_UI_CDRS=100000
#   BENCH_BUILD=1 (0 = use the release binaries as they are); the flags of
#   bench/lib/ui.py follow on the command line (e.g. --requests 50 --cold 3).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
OUT=$BENCH_DIR/out
LIB=$BENCH_DIR/lib/bench.py
REL=${CARGO_TARGET_DIR:-$ROOT/target}/release
USERS=${BENCH_UI_USERS:-10000}
CDRS=${BENCH_UI_CDRS:-100000}
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/switchboard-bench-ui.XXXXXX)
SB_PID="" UI_PID=""

say() { printf '== %s\n' "$*" >&2; }
stop() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop "$UI_PID"
	stop "$SB_PID"
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v sipp >/dev/null || { echo "sipp missing: run bench/run.sh or scripts/ensure-deps.sh" >&2; exit 1; }
if [ "${BENCH_BUILD:-1}" != 0 ]; then
	(cd "$ROOT" && cargo build --release --bin switchboard-signaling --bin switchboard-ui --bin cdr-seed)
fi
for b in switchboard-signaling switchboard-ui cdr-seed; do
	[ -x "$REL/$b" ] || { echo "$REL/$b not built (cargo build --release --workspace)" >&2; exit 1; }
done

DATA=$TMP/signaling-data
say "seeding $CDRS CDRs into $DATA (store API)"
"$REL/cdr-seed" --data-dir "$DATA" --count "$CDRS" >&2

SIP=$(python3 "$LIB" port)
API=$(python3 "$LIB" port)
say "switchboard-signaling on udp:127.0.0.1:$SIP, API 127.0.0.1:$API"
PORT=$SIP BIND=127.0.0.1 API_PORT=$API API_BIND=127.0.0.1 DATA_DIR=$DATA API_TOKEN=bench \
	AUTH_ALGORITHMS=MD5 LOGLEVEL=warn SIP_RATE_PER_IP=0 \
	"$REL/switchboard-signaling" >"$OUT/ui-signaling.log" 2>&1 &
SB_PID=$!
python3 "$LIB" wait-tcp --port "$API" --seconds 30 && python3 "$LIB" wait-udp --port "$SIP" --seconds 10 ||
	{ echo "switchboard-signaling did not start: see bench/out/ui-signaling.log" >&2; exit 1; }

say "creating $USERS users over the REST API"
python3 "$LIB" create-users --api "127.0.0.1:$API" --token bench --first 0 --count "$USERS" >&2
CSV=$TMP/users.csv
python3 "$LIB" users-csv --first 0 --count "$USERS" --out "$CSV" >/dev/null
say "registering them with sipp (1000/s)"
python3 "$LIB" run --target "127.0.0.1:$SIP" --csv "$CSV" --workdir "$TMP/sipp" \
	--server-pid "$SB_PID" --local-port "$(python3 "$LIB" port)" --rate 1000 --calls "$USERS" \
	>"$OUT/ui-register.json"

UI=$(python3 "$LIB" port)
say "switchboard-ui on 127.0.0.1:$UI"
mkdir -p "$TMP/ui-data"
UI_PORT=$UI UI_BIND=127.0.0.1 UI_LOGLEVEL=warn UI_DATA_DIR=$TMP/ui-data \
	UI_BACKENDS="sig=http://127.0.0.1:$API" UI_BACKEND_TOKENS="sig=bench" UI_ADMIN_PASSWORD=bench-admin-pw \
	"$REL/switchboard-ui" >"$OUT/ui-ui.log" 2>&1 &
UI_PID=$!
python3 "$LIB" wait-tcp --port "$UI" --seconds 30 ||
	{ echo "switchboard-ui did not start: see bench/out/ui-ui.log" >&2; exit 1; }

python3 "$BENCH_DIR/lib/ui.py" --ui "127.0.0.1:$UI" --password bench-admin-pw \
	--api "127.0.0.1:$API" --token bench --backend sig \
	--ui-pid "$UI_PID" --signaling-pid "$SB_PID" \
	--registrations "$USERS" --cdrs "$CDRS" --out "$OUT/ui.json" "$@"
