#!/usr/bin/env bash
# ARC demo on CPU, random:tiny-sized: synthetic data -> RF base -> ARC -> export -> parity -> generate.
# Usage: bash benchmarks/arc/demo.sh [WORK_DIR]    (about 3 minutes in all on 2 CPU cores)
set -euo pipefail
W=${1:-runs/arc-demo}
E=".venv/bin/edgegen"  # the project's own interpreter for every line, not an `edgegen` found on PATH
T="$E train"
$T synth --model random:tiny --out "$W/data" --count 96
$T cache --model random:tiny --captions "$W/data/captions.jsonl" --out "$W/cache.safetensors"
$T rf  --model random:tiny --cache "$W/cache.safetensors" --out "$W/base" --steps 400 --lr 1e-3 --ema-beta 0.999 \
       --batch-size 16
$T arc --model "$W/base/model" --t5 "$W/base/t5" --cache "$W/cache.safetensors" --out "$W/arc" --steps 160 \
       --disc-warmup-steps 60 --ema-beta 0.995 --batch-size 16 --head-channels 32
$E export --model "$W/arc/model" --t5 "$W/base/t5" --target host-executorch --recipe fp32 \
       --output "$W/bundle" --force
$E parity --bundle "$W/bundle" --model "$W/arc/model" --t5 "$W/base/t5"
$E generate --model "$W/arc/model" --t5 "$W/base/t5" --prompt "a major chord" --seconds 0.7 --steps 8 \
       --output "$W/arc.wav"
