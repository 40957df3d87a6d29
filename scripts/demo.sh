#!/usr/bin/env bash
# The main job end to end on the embedded default model (random:tiny), no downloads:
# generate with the PyTorch reference.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out/demo}
mkdir -p "$out"
eg=.venv/bin/edgegen
$eg info --model random:tiny
$eg generate --model random:tiny --prompt "warm lo-fi piano loop" --seconds 0.7 --seed 0 -o "$out/reference.wav"
