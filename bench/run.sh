#!/usr/bin/env bash
# bench/run.sh — authenticated REGISTER: Switchboard against Kamailio 5.6.
#
# For each server, on 127.0.0.1 only:
#   1. memory per contact   register 100,000 distinct AORs, Δ memory / contacts
#   2. rate search          highest fixed rate sipp sustains with 0 failed
#                           calls, 0 unexpected messages, 0 retransmissions
#   3. CPU per registration server utime+stime over the best passing run
# then prints a table and writes bench/out/register.json.
#
# One sipp "call" = REGISTER → 401 (digest challenge, MD5, qop=auth) →
# REGISTER with credentials → 200 OK with the Contact (bench/sipp/register_auth.xml).
#
# Knobs (environment):
#   BENCH_DURATION=10        seconds per rate-search run (calls = rate × this)
#   BENCH_MAX_SECONDS=240    time budget of one target's rate search
#   BENCH_START_RATE=2000    first rate tried (×1.25 while passing, then bisect)
#   BENCH_USERS=100000       users / contacts registered for the memory figure
#   BENCH_MEMORY=1           0 = skip the memory step
#   BENCH_MEMORY_RATE=4000   rate of the 100k registrations of the memory step
#   BENCH_TARGETS="kamailio switchboard"
#   BENCH_BUILD=1            0 = do not run cargo build (use the binary as is)
#   BENCH_SWITCHBOARD_BIN=   another binary to measure instead (no build then)
#   BENCH_SWITCHBOARD_QUIET=35  seconds to wait before the "after" memory read
#   BENCH_KAMAILIO_PORT=15060 BENCH_SWITCHBOARD_PORT=15070 (next free if taken)
#
# Exit status: 0 when everything that could be measured was measured
# (a switchboard-signaling binary that does not exist yet is reported as
# "not built" and is not a failure); 1 otherwise.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
OUT=$BENCH_DIR/out
LIB=$BENCH_DIR/lib/bench.py

DURATION=${BENCH_DURATION:-10}
MAX_SECONDS=${BENCH_MAX_SECONDS:-240}
START_RATE=${BENCH_START_RATE:-2000}
USERS=${BENCH_USERS:-100000}
MEMORY=${BENCH_MEMORY:-1}
MEM_RATE=${BENCH_MEMORY_RATE:-4000}
WARMUP=${BENCH_WARMUP:-1000}
TARGETS=${BENCH_TARGETS:-"kamailio switchboard"}
BUILD=${BENCH_BUILD:-1}
SB_QUIET=${BENCH_SWITCHBOARD_QUIET:-35}
KAM_QUIET=${BENCH_KAMAILIO_QUIET:-5}

mkdir -p "$OUT"
# results of an earlier run must not leak into this run's report
rm -f "$OUT"/{kamailio,switchboard}-{smoke,memory,search,users}.json "$OUT/register.json"
TMP=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
KAM_PID="" SB_PID="" HELPER_PID="" OWN_POLICY=0
FAILURES=0
T0=$(date +%s)

say() { printf '== %s\n' "$*" >&2; }
fail() { printf '!! %s\n' "$*" >&2; FAILURES=$((FAILURES + 1)); }

# ---------------------------------------------------------------------------
# cleanup: stop what this script started (by pid), remove the temp dir
# ---------------------------------------------------------------------------
stop_tree() {  # stop_tree PID — TERM the process, then KILL what is left of its tree
	local pid=$1 kids i
	[ -n "$pid" ] || return 0
	kids=$(pgrep -P "$pid" || true)
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	for k in $pid $kids; do kill -KILL "$k" 2>/dev/null || true; done
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$HELPER_PID" ]; then  # a helper and the sipp it runs
		for k in $(pgrep -P "$HELPER_PID" || true); do kill -TERM "$k" 2>/dev/null || true; done
		kill -TERM "$HELPER_PID" 2>/dev/null || true
	fi
	stop_tree "$KAM_PID"
	stop_tree "$SB_PID"
	if [ "$OWN_POLICY" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run the python helper in the background and wait for it, so that a signal
# reaches the trap at once and the trap knows which helper (and sipp) to stop.
helper() {
	python3 "$LIB" "$@" &
	HELPER_PID=$!
	local rc=0
	wait "$HELPER_PID" || rc=$?
	HELPER_PID=""
	return "$rc"
}

# ---------------------------------------------------------------------------
# tools: sipp (package sip-tester) and kamailio, installed only when missing
# ---------------------------------------------------------------------------
apt_install() {
	# policy-rc.d exit 101 = "do not start services": the kamailio package
	# would otherwise start a system kamailio on 5060 at install time.
	local rc=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		OWN_POLICY=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	say "apt-get install $*"
	apt-get install -y -q "$@" >>"$OUT/apt.log" 2>&1 ||
		{ apt-get update -q >>"$OUT/apt.log" 2>&1 && apt-get install -y -q "$@" >>"$OUT/apt.log" 2>&1; } ||
		rc=$?
	if [ "$OWN_POLICY" = 1 ]; then rm -f /usr/sbin/policy-rc.d; OWN_POLICY=0; fi
	return "$rc"
}

command -v sipp >/dev/null || apt_install sip-tester
if [[ " $TARGETS " == *" kamailio "* ]] && ! command -v kamailio >/dev/null; then
	apt_install kamailio
	# The package enables kamailio.service; we never use it, and it would
	# hold 5060 after the next boot. Our own instance runs from our config.
	if [ -d /run/systemd/system ]; then
		systemctl disable --now kamailio.service >>"$OUT/apt.log" 2>&1 || true
	elif command -v update-rc.d >/dev/null; then
		update-rc.d kamailio disable >>"$OUT/apt.log" 2>&1 || true
	fi
fi

# ---------------------------------------------------------------------------
# the switchboard binary: build first, so compiling does not overlap with
# any measurement
# ---------------------------------------------------------------------------
SB_BIN=${BENCH_SWITCHBOARD_BIN:-$ROOT/target/release/switchboard-signaling}
SB_STATUS=ok
if [[ " $TARGETS " == *" switchboard "* ]]; then
	if [ "$BUILD" != 0 ] && [ -z "${BENCH_SWITCHBOARD_BIN:-}" ] && command -v cargo >/dev/null; then
		if [ ! -x "$SB_BIN" ] ||
			[ -n "$(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$SB_BIN" -print -quit 2>/dev/null)" ]; then
			say "cargo build --release --workspace (log: bench/out/cargo-build.log)"
			if ! (cd "$ROOT" && cargo build --release --workspace) >"$OUT/cargo-build.log" 2>&1; then
				fail "cargo build failed: see bench/out/cargo-build.log"
				SB_STATUS="build failed"
			fi
		fi
	fi
	if [ "$SB_STATUS" = ok ] && [ ! -x "$SB_BIN" ]; then
		echo "switchboard-signaling: not built"
		SB_STATUS="not built"
	fi
else
	SB_STATUS="skipped"
fi

# ---------------------------------------------------------------------------
# users: one injection file for the measured AORs, one for the warm-up
# (user100000.. so warm-up bindings are not among the measured ones).
# Kamailio derives the password (userN → passN); Switchboard gets the same
# users through its REST API.
# ---------------------------------------------------------------------------
USERS_CSV=$BENCH_DIR/sipp/users.csv
WARM_CSV=$BENCH_DIR/sipp/warmup.csv
helper users-csv --first 0 --count "$USERS" --out "$USERS_CSV" >/dev/null
helper users-csv --first "$USERS" --count "$WARMUP" --out "$WARM_CSV" >/dev/null

# measure TARGET PID SIP_PORT QUIET [extra memory args...]
# Memory first, on the fresh server (the rate search would otherwise have
# registered the same AORs already), then the rate search on the same server
# with its 100k contacts in place, as a loaded registrar would be.
measure() {
	local name=$1 pid=$2 port=$3 quiet=$4
	shift 4
	local lport
	lport=$(helper port)
	# smoke test: 10 registrations must all get 401 then 200 with a Contact
	# (warm-up users, so the measured AORs are still unregistered)
	if ! helper run --target "127.0.0.1:$port" --csv "$WARM_CSV" --workdir "$TMP/$name" \
		--server-pid "$pid" --local-port "$lport" --rate 10 --calls 10 \
		>"$OUT/$name-smoke.json"; then
		fail "$name: smoke test failed (10 REGISTERs): see bench/out/$name-smoke.json"
		return 1
	fi
	if [ "$MEMORY" != 0 ]; then
		say "$name: memory per contact ($USERS contacts, then ${quiet}s quiet)"
		helper memory --target "127.0.0.1:$port" --csv "$USERS_CSV" --warmup-csv "$WARM_CSV" \
			--warmup-count "$WARMUP" --count "$USERS" --rate "$MEM_RATE" --quiet "$quiet" \
			--workdir "$TMP/$name" --server-pid "$pid" --local-port "$lport" "$@" \
			>"$OUT/$name-memory.json" || fail "$name: memory measurement failed"
	else
		rm -f "$OUT/$name-memory.json"
	fi
	say "$name: rate search from $START_RATE/s, ${DURATION}s per step, budget ${MAX_SECONDS}s"
	helper search --target "127.0.0.1:$port" --csv "$USERS_CSV" --workdir "$TMP/$name" \
		--server-pid "$pid" --local-port "$lport" --start "$START_RATE" \
		--duration "$DURATION" --max-seconds "$MAX_SECONDS" \
		>"$OUT/$name-search.json" || fail "$name: rate search failed"
	if ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["best"] else 1)' \
		"$OUT/$name-search.json"; then
		fail "$name: no rate passed"
	fi
}

# ---------------------------------------------------------------------------
# Kamailio: our config, our port, foreground main process (-DD) with its
# forked workers, logs on stderr (-E). 256 MB of shared memory holds 100k
# contacts comfortably; pages of the pool are only counted once touched.
# ---------------------------------------------------------------------------
KAM_META='{"status": "skipped"}'
if [[ " $TARGETS " == *" kamailio "* ]]; then
	KAM_VERSION=$(kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([^ ]*\).*/\1/p')
	KAM_PORT=$(helper port --prefer "${BENCH_KAMAILIO_PORT:-15060}")
	KAM_CTL=$TMP/kamailio-ctl.sock
	mkdir -p "$TMP/kamailio-run"
	say "kamailio $KAM_VERSION on udp:127.0.0.1:$KAM_PORT (children=2, usrloc db_mode=0)"
	kamailio -f "$BENCH_DIR/kamailio/kamailio.cfg" -DD -E -m 256 -M 8 \
		-P "$TMP/kamailio.pid" -Y "$TMP/kamailio-run" \
		-A "BENCH_LISTEN=udp:127.0.0.1:$KAM_PORT" -A "BENCH_CTL=\"unix:$KAM_CTL\"" \
		>"$OUT/kamailio.log" 2>&1 &
	KAM_PID=$!
	KAM_STATUS="failed to start"
	for _ in $(seq 50); do
		if kamcmd -s "unix:$KAM_CTL" core.uptime >/dev/null 2>&1; then KAM_STATUS=ok; break; fi
		kill -0 "$KAM_PID" 2>/dev/null || break
		sleep 0.2
	done
	if [ "$KAM_STATUS" = ok ]; then
		measure kamailio "$KAM_PID" "$KAM_PORT" "$KAM_QUIET" --kamailio-ctl "unix:$KAM_CTL" ||
			KAM_STATUS="smoke test failed"
	else
		fail "kamailio did not start: see bench/out/kamailio.log"
	fi
	stop_tree "$KAM_PID"
	KAM_PID=""
	KAM_META="{\"status\": \"$KAM_STATUS\", \"version\": \"kamailio $KAM_VERSION\", \"port\": $KAM_PORT}"
fi

# ---------------------------------------------------------------------------
# Switchboard: one process, fresh data dir, users created over the REST API
# before any SIP traffic (their creation is not part of what is measured).
# ---------------------------------------------------------------------------
SB_META="{\"status\": \"$SB_STATUS\"}"
if [ "$SB_STATUS" = ok ]; then
	SB_VERSION=$("$SB_BIN" --version 2>/dev/null | head -1 || true)
	SB_PORT=$(helper port --prefer "${BENCH_SWITCHBOARD_PORT:-15070}")
	SB_API=$(helper port)
	mkdir -p "$TMP/switchboard-data"
	say "switchboard on udp:127.0.0.1:$SB_PORT, API 127.0.0.1:$SB_API"
	# sipp loads from one address at 10-30k REGISTERs/s, keeping ~500k
	# answered transactions for Timer J: the per-source rate limit and the
	# transaction cap (production defaults 100/s and 200,000) are lifted,
	# as they are not what is measured
	PORT=$SB_PORT BIND=127.0.0.1 API_PORT=$SB_API API_BIND=127.0.0.1 \
		DATA_DIR=$TMP/switchboard-data API_TOKEN=bench AUTH_ALGORITHMS=MD5 LOGLEVEL=warn \
		SIP_RATE_PER_IP=0 MAX_TRANSACTIONS=0 \
		"$SB_BIN" >"$OUT/switchboard.log" 2>&1 &
	SB_PID=$!
	if helper wait-tcp --port "$SB_API" --seconds 30 && helper wait-udp --port "$SB_PORT" --seconds 10 &&
		kill -0 "$SB_PID" 2>/dev/null; then
		say "switchboard: creating $((USERS + WARMUP)) users over the REST API"
		if helper create-users --api "127.0.0.1:$SB_API" --token bench --first 0 \
			--count "$((USERS + WARMUP))" >"$OUT/switchboard-users.json"; then
			say "switchboard: $(cat "$OUT/switchboard-users.json")"
			measure switchboard "$SB_PID" "$SB_PORT" "$SB_QUIET" || SB_STATUS="smoke test failed"
		else
			fail "switchboard: creating users failed: $(cat "$OUT/switchboard-users.json")"
			SB_STATUS="user creation failed"
		fi
	else
		fail "switchboard did not start: see bench/out/switchboard.log"
		SB_STATUS="failed to start"
	fi
	stop_tree "$SB_PID"
	SB_PID=""
	SB_META="{\"status\": \"$SB_STATUS\", \"version\": \"${SB_VERSION:-switchboard}\", \"port\": $SB_PORT}"
fi

# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------
mem_or_none() { [ "$MEMORY" != 0 ] && [ -s "$OUT/$1-memory.json" ] && echo "$OUT/$1-memory.json" || echo ""; }
helper report \
	--kamailio-meta "$KAM_META" --kamailio-search "$OUT/kamailio-search.json" \
	--kamailio-memory "$(mem_or_none kamailio)" \
	--switchboard-meta "$SB_META" --switchboard-search "$OUT/switchboard-search.json" \
	--switchboard-memory "$(mem_or_none switchboard)" \
	--settings "{\"duration_s\": $DURATION, \"max_seconds\": $MAX_SECONDS, \"start_rate\": $START_RATE, \"users\": $USERS, \"memory\": $MEMORY, \"memory_rate\": $MEM_RATE}" \
	--out "$OUT/register.json"
echo "  total time: $(($(date +%s) - T0)) s"

[ "$FAILURES" = 0 ]
