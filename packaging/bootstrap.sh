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
if [ "$mode" != app ] && [ "$mode" != test ]; then
  echo "usage: bash packaging/bootstrap.sh app|test [args...]" >&2
  exit 2
fi

# What the app needs at run time: PortAudio, the ALSA->PulseAudio plugin that lets
# PortAudio open any PulseAudio source (docs/architecture.md, "Devices"), pactl to list
# sources, and the libraries Qt's xcb platform plugin loads.
app_packages=(libportaudio2 libasound2-plugins pulseaudio-utils python3-venv
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-render-util0 libxcb-image0)
# What the tests start or use: real PulseAudio and PipeWire servers with virtual devices
# (PipeWire with its PulseAudio server and WirePlumber, under dbus-run-session), speech
# from espeak-ng, a real Redis, Xvfb for the window screenshot, and desktop-file-validate
# for the desktop entry.
test_packages=(pulseaudio pipewire pipewire-pulse wireplumber dbus espeak-ng sox
  redis-server xvfb desktop-file-utils)

packages=("${app_packages[@]}")
extras="."
if [ "$mode" = test ]; then
  packages+=("${test_packages[@]}")
  extras=".[test]"
fi

missing=()
# One dpkg-query for all of them ("installed <name>" lines; unknown names print nothing).
installed=$'\n'"$(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" \
  2>/dev/null || true)"$'\n'
for p in "${packages[@]}"; do
  [[ "$installed" == *$'\n'"installed $p"$'\n'* ]] || missing+=("$p")
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
# pip runs only when what it installs from changed since the last run that installed
# these extras: pyproject.toml, this script, the checkout's place (the editable install
# points at it). The test extras include the app's, so they satisfy both stamps.
stamp_of() { echo ".venv/.bootstrap-$1"; }
want="$(cat pyproject.toml packaging/bootstrap.sh | sha256sum | cut -d' ' -f1) $PWD"
stamp="$(stamp_of "$mode")"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e "$extras"
  echo "$want" > "$stamp"
  [ "$mode" != test ] || echo "$want" > "$(stamp_of app)"
fi

case "$mode" in
  app)
    exec .venv/bin/meetcap "$@"
    ;;
  test)
    export QT_QPA_PLATFORM=offscreen
    exec .venv/bin/python -m pytest "$@"
    ;;
esac
