#!/usr/bin/env bash
# Makes sure the servers the cluster tests talk to answer on loopback:
# Postgres on 127.0.0.1:5432 (user postgres, trust), Redis on 127.0.0.1:6379
# and NATS with JetStream on 127.0.0.1:4222. A server already answering is
# left alone; a missing one is installed from Debian's packages and started
# with its data under $SERVICES_DIR (default /tmp/switchboard-services).
# Tests never stop these shared servers: a test that needs a server to go
# away starts a private instance of its own on another port.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
DIR="${SERVICES_DIR:-/tmp/switchboard-services}"
PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
NATS_PORT="${NATS_PORT:-4222}"
mkdir -p "$DIR"

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  for _ in $(seq 1 50); do
    if answers "$1"; then return 0; fi
    sleep 0.2
  done
  echo "$2 did not come up on 127.0.0.1:$1 (see $DIR)" >&2
  exit 1
}

# --- Postgres -------------------------------------------------------------
if ! command -v psql >/dev/null 2>&1; then
  echo "installing the Postgres client..."
  apt_install postgresql-client
fi
if ! answers "$PG_PORT"; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing Postgres..."
    apt_install postgresql
  fi
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  data="$DIR/postgres"
  as_pg=()
  if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); chown postgres "$DIR"; fi
  if [ ! -s "$data/PG_VERSION" ]; then
    "${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
  fi
  echo "starting Postgres on 127.0.0.1:$PG_PORT..."
  "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$DIR/postgres.log" -w \
    -o "-p $PG_PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
  wait_for "$PG_PORT" Postgres
fi

# --- Redis ----------------------------------------------------------------
if ! answers "$REDIS_PORT"; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing Redis..."
    apt_install redis-server
  fi
  echo "starting Redis on 127.0.0.1:$REDIS_PORT..."
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize yes --logfile "$DIR/redis.log" --dir "$DIR"
  wait_for "$REDIS_PORT" Redis
fi
if ! command -v redis-cli >/dev/null 2>&1; then apt_install redis-tools; fi

# --- NATS with JetStream --------------------------------------------------
if ! answers "$NATS_PORT"; then
  if ! command -v nats-server >/dev/null 2>&1; then
    echo "installing nats-server..."
    apt_install nats-server
  fi
  echo "starting NATS (JetStream) on 127.0.0.1:$NATS_PORT..."
  nohup nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$DIR/nats" \
    >"$DIR/nats.log" 2>&1 &
  wait_for "$NATS_PORT" NATS
fi

echo "services ok: Postgres $PG_PORT, Redis $REDIS_PORT, NATS $NATS_PORT on 127.0.0.1"
