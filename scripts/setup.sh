#!/usr/bin/env bash
# Set up what Giao Ban needs on a Debian machine: Debian packages, a virtual environment, Python
# packages. Idempotent and quick when everything is already there.
#   scripts/setup.sh run    what `make run` needs
#   scripts/setup.sh test   that, plus what the test suite needs (Chromium, PostgreSQL, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-run}
venv=${VENV:-.venv}

run_pkgs=(python3 python3-venv python3-dev build-essential janus janus-tools coturn ffmpeg iproute2 ca-certificates)
test_pkgs=(chromium fonts-dejavu-core postgresql iproute2 procps)

want=("${run_pkgs[@]}")
if [ "$mode" = test ]; then want+=("${test_pkgs[@]}"); fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]} — run as root (or install them) and retry." >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A Debian package may start its own service; we supervise Janus ourselves.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet janus 2>/dev/null; then
  systemctl disable --now janus >/dev/null 2>&1 || true
fi
# Same for coturn (`giaoban serve` runs its own with GIAOBAN_TURN_MODE=local): neither enabled at boot
# nor running. `systemctl disable` works even where systemd is not PID 1 (containers).
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet coturn 2>/dev/null; then
  systemctl disable coturn >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl stop coturn >/dev/null 2>&1 || true
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed ($python is $("$python" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating virtual environment $venv"
  "$python" -m venv "$venv"
fi

# run: the app and the lab (`giaoban loadtest`); test: that, plus the test tools (the test extra has the lab).
extra="[lab]"
[ "$mode" = test ] && extra="[lab,test]"
stamp="$venv/.installed-$mode"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e ".$extra"
  touch "$stamp"
fi
