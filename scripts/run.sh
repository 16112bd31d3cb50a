#!/usr/bin/env bash
# `make run`: switchboard-signaling and the dashboard (switchboard-ui)
# together, on the binaries make built. Signaling runs on its defaults
# (SIP 5060, REST API 8080, SQLite under DATA_DIR); once its API answers,
# the UI starts on UI_PORT (3000) pointed at http://127.0.0.1:$API_PORT
# with the API token (DATA_DIR/api_token, or API_TOKEN when set) in an
# owner-only tokens file. Ctrl-C or SIGTERM stops both; when either one
# exits, the other is stopped too.
#
# The browser phone (http://127.0.0.1:3000/phone) registers over SIP over
# WebSocket: unless WS_PORT or UI_SIP_WSS_URL is set, signaling opens a
# plain WS listener on WS_PORT 5066 (for a browser on this machine: plain
# WS carries SIP in clear, so a phone on another machine uses WSS with a
# certificate, see README) that lets in pages of the dashboard's origin.
set -u

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DATA_DIR=${DATA_DIR:-./data}
API_PORT=${API_PORT:-8080}
export UI_DATA_DIR=${UI_DATA_DIR:-$DATA_DIR}

UI_PORT_RUN=${UI_PORT:-3000}
if [ -z "${WS_PORT:-}" ] && [ -z "${UI_SIP_WSS_URL:-}" ]; then
  export WS_PORT=5066
  export UI_SIP_WSS_URL="ws://127.0.0.1:$WS_PORT"
  export WS_ALLOWED_ORIGINS=${WS_ALLOWED_ORIGINS:-http://127.0.0.1:$UI_PORT_RUN,http://localhost:$UI_PORT_RUN}
fi

pids=()
stop() {
  trap - INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

"$BIN/switchboard-signaling" --data-dir "$DATA_DIR" &
pids+=($!)

# the API answers once signaling has started (the token is written by then)
up=
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null; then up=1; break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then wait "${pids[0]}"; exit $?; fi
  sleep 0.2
done
if [ -z "$up" ]; then
  echo "run.sh: the API did not answer on 127.0.0.1:$API_PORT within 60 s" >&2
  stop
  exit 1
fi

export UI_BACKENDS=${UI_BACKENDS:-local=http://127.0.0.1:$API_PORT}
if [ -z "${UI_BACKEND_TOKENS:-}" ] && [ -z "${UI_BACKEND_TOKENS_FILE:-}" ]; then
  token=${API_TOKEN:-$(cat "$DATA_DIR/api_token" 2>/dev/null)}
  if [ -z "$token" ]; then
    echo "run.sh: no API token (neither API_TOKEN nor $DATA_DIR/api_token)" >&2
    stop
    exit 1
  fi
  export UI_BACKEND_TOKENS_FILE="$DATA_DIR/ui_backend_tokens"
  rm -f "$UI_BACKEND_TOKENS_FILE"
  (umask 077 && printf 'local=%s\n' "$token" > "$UI_BACKEND_TOKENS_FILE")
fi

"$BIN/switchboard-ui" &
pids+=($!)
if [ -z "${UI_ADMIN_PASSWORD:-}" ]; then
  echo "dashboard: http://127.0.0.1:$UI_PORT_RUN/ — user admin, password in $UI_DATA_DIR/ui_admin_password"
else
  echo "dashboard: http://127.0.0.1:$UI_PORT_RUN/ — user admin, password UI_ADMIN_PASSWORD"
fi
if [ -n "${UI_SIP_WSS_URL:-}" ]; then
  echo "browser phone: http://127.0.0.1:$UI_PORT_RUN/phone — a SIP user's name and password (registers to $UI_SIP_WSS_URL)"
fi

wait -n
rc=$?
stop
exit "$rc"
