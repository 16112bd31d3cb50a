#!/usr/bin/env bash
# Installs what `make test` and `make run` need when it is missing, and does
# nothing when it is already there. Debian/Ubuntu (apt-get); run as root or
# with sudo available.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

# sipp: the SIP peer the scenario tests drive (Debian package sip-tester).
if ! command -v sipp >/dev/null 2>&1; then
  echo "installing sipp (sip-tester)..."
  apt_install sip-tester
fi

# Postgres, Redis and NATS for the cluster tests (started when missing).
"$(dirname "$0")/ensure-services.sh"

echo "dependencies ok: $(sipp -v 2>/dev/null | grep -o 'SIPp v[0-9.]*' | head -1), $(cargo --version)"
