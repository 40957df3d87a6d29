#!/usr/bin/env bash
# ARC demo on CPU, random:tiny-sized: synthetic data -> RF base -> ARC -> export -> parity -> generate.
# Usage: bash benchmarks/arc/demo.sh [WORK_DIR]    (about 3 minutes in all on 2 CPU cores)
set -euo pipefail
W=${1:-runs/arc-demo}
T=".venv/bin/edgegen train"
$T synth --model random:tiny --out "$W/data" --count 96
$T cache --model random:tiny --captions "$W/data/captions.jsonl" --out "$W/cache.pt"
$T rf  --model random:tiny --cache "$W/cache.pt" --out "$W/base" --steps 400 --lr 1e-3 --ema-beta 0.999 --batch-size 16
$T arc --model "$W/base/model" --t5 "$W/base/t5" --cache "$W/cache.pt" --out "$W/arc" --steps 100 --lr 1e-5 \
       --ema-beta 0.999 --batch-size 16 --head-channels 32
edgegen export --model "$W/arc/model" --t5 "$W/base/t5" --target host-executorch --recipe fp32 \
       --output "$W/bundle" --force
edgegen parity --bundle "$W/bundle" --model "$W/arc/model" --t5 "$W/base/t5"
edgegen generate --model "$W/arc/model" --t5 "$W/base/t5" --prompt "a major chord" --seconds 0.7 --steps 8 \
       --output "$W/arc.wav"
