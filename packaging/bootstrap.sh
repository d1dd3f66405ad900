#!/usr/bin/env bash
# One-step set-up on a fresh Debian/Ubuntu machine, then run meetcap or its tests.
#
#   bash packaging/bootstrap.sh app     install what is missing, then launch the app
#   bash packaging/bootstrap.sh test    install what is missing (test tools too), run the tests
#
# System packages come from apt (only the missing ones, so a second run is quick);
# Python packages go into .venv beside this checkout, never into the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-app}"
shift || true

# What the app needs at run time: PortAudio, the ALSA->PulseAudio plugin that lets
# PortAudio open any PulseAudio source (docs/architecture.md, "Devices"), pactl to list
# sources, and the libraries Qt's xcb platform plugin loads.
app_packages=(libportaudio2 libasound2-plugins pulseaudio-utils python3-venv
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-render-util0 libxcb-image0)
# What the tests start or use: a real PulseAudio server with virtual devices, speech
# from espeak-ng, a real Redis, Xvfb for the window screenshot, and desktop-file-validate
# for the desktop entry.
test_packages=(pulseaudio espeak-ng sox redis-server xvfb desktop-file-utils)

packages=("${app_packages[@]}")
extras="."
if [ "$mode" = test ]; then
  packages+=("${test_packages[@]}")
  extras=".[test]"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "meetcap: installing system packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e "$extras"

case "$mode" in
  app)
    exec .venv/bin/meetcap "$@"
    ;;
  test)
    export QT_QPA_PLATFORM=offscreen
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: bash packaging/bootstrap.sh app|test [args...]" >&2
    exit 2
    ;;
esac
