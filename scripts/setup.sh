#!/usr/bin/env bash
# Create .venv/ in the repository root and install edgegen with its pinned dependencies (idempotent).
# Also installs, with apt when run as root, the native toolchain the runner tests need and the synthesizer and
# SoundFont the corpus renders with (fluidsynth, fluid-soundfont-gm: `python -m edgegen.corpus render`), and lets apt
# fetch Debian's arm64 packages for the tests' aarch64 CPython.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.edgegen-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test,bench,corpus]"
  echo "$want" > "$stamp"
fi
if [ "${EDGEGEN_SKIP_APT:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
  need=()
  for pkg in cmake g++ g++-aarch64-linux-gnu qemu-user libsentencepiece-dev openjdk-17-jdk-headless \
             fluidsynth fluid-soundfont-gm; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  update=0
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    # the tests' aarch64 CPython (tests/aarch64_python.py) is unpacked from Debian's arm64 packages (apt-get download)
    dpkg --add-architecture arm64
    update=1
  fi
  if [ ${#need[@]} -gt 0 ] || [ $update = 1 ]; then
    apt-get update -qq
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (native runner build, aarch64 emulation, corpus synthesizer and SoundFont)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
