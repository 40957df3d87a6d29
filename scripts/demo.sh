#!/usr/bin/env bash
# The main job end to end on the embedded default model (random:tiny), no downloads:
# reference generation -> int8 bundles for ExecuTorch and LiteRT -> run each -> parity gate -> benchmark,
# then a streamed-decoder bundle (random:tiny-long, 64 latent frames) run with --stream.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out/demo}
mkdir -p "$out"
eg=.venv/bin/edgegen
prompt="warm lo-fi piano loop with soft drums"
$eg info --model random:tiny
$eg generate --model random:tiny --prompt "$prompt" --seconds 0.7 --seed 0 -o "$out/reference.wav"
for backend in executorch litert; do
  $eg export --model random:tiny --target "host-$backend" --recipe int8 -o "$out/tiny-$backend-int8" --force
  $eg info "$out/tiny-$backend-int8"
  $eg run --bundle "$out/tiny-$backend-int8" --prompt "$prompt" --seconds 0.7 --seed 0 -o "$out/$backend.wav"
  $eg parity --bundle "$out/tiny-$backend-int8" --model random:tiny --json "$out/parity-$backend.json"
  $eg bench --bundle "$out/tiny-$backend-int8" --iters 3 | tail -n 1 > "$out/bench-$backend.json"
done
$eg export --model random:tiny-long --target host-litert --recipe fp32 --decoder-window auto -o "$out/tiny-long-stream" --force
$eg run --bundle "$out/tiny-long-stream" --prompt "$prompt" --seconds 2.9 --seed 0 --stream -o "$out/streamed.wav"
$eg parity --bundle "$out/tiny-long-stream" --model random:tiny-long --json "$out/parity-stream.json"
echo "demo outputs in $out: reference.wav, executorch.wav, litert.wav, streamed.wav, parity-*.json, bench-*.json"
