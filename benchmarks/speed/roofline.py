"""How fast can SAO-small go on this machine? Measured work and measured kernel rates -> a floor per stage.

    .venv/bin/python -m benchmarks.speed.roofline --eager-s 20.48 --out out/roofline.json   # ~3 min on 2 cores

1. Work: FLOPs of one DiT step and of the decoder per latent frame, counted by torch's FlopCounterMode on the
   eager random:sao-small modules (matmuls and convolutions; elementwise ops are left out, so floors are low).
2. Rates: LiteRT + XNNPACK (the faster backend here), 2 threads, on layers shaped like the model's:
   a DiT feed-forward GEMM (257 tokens x 1024 -> 4096) in fp32 and dynamic int8, and a decoder convolution
   (256 channels, 7 taps, 16384 samples) in fp32. Best of 20 after a warm-up (this VM's speed drifts by
   +-20% between runs, so the best run is the closest to what the cores can do).
3. Floors: all of that work at the single best rate measured (the DiT's 8 steps, and the decoder's whole
   sequence with no window overlap). Elementwise work, layout copies and the text encoder are left out, so the
   floors are optimistic. Time to first audio can never be below the 8 DiT steps, so its share of an end to
   end at the target has a floor too.
The eager end to end to compare with is `--eager-s` (the suite's eager row in the same session, e.g.
`results.json`'s rows[0].bench.e2e_s from `benchmarks/speed/suite.py`). Prints a table and writes --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def litert_rate(module: nn.Module, example: torch.Tensor, flops: int, *, int8: bool) -> float:
    """GFLOP/s of `module` converted to LiteRT (optionally dynamic-range int8), 2 threads, best of 5."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter

    from edgegen.export.litert import quantize_tflite
    from edgegen.recipes import Rule

    data = litert_torch.convert(module.eval(), (example,)).model_content()
    if int8:
        data, _ = quantize_tflite(data, rule=Rule("*", "int8"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"
        path.write_bytes(data)
        runner = Interpreter(model_path=str(path), num_threads=2).get_signature_runner()
        name = next(iter(runner.get_input_details()))
        x = example.numpy()
        runner(**{name: x})
        best = float("inf")
        for _ in range(20):
            start = time.perf_counter()
            runner(**{name: x})
            best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eager-s", type=float, required=True, help="eager end to end (s) measured in the same session")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    from edgegen.pipeline import load_pipeline

    pipe = load_pipeline("random:sao-small")
    T, L, C = pipe.latent_length, pipe.config.max_length, pipe.config.cond_dim
    x, cross, glob = torch.randn(1, 64, T), torch.randn(1, L + 1, C), torch.randn(1, C)
    dit_flops = count_flops(lambda: pipe.dit(x, torch.tensor([0.5]), cross, glob))
    window = 16
    dec_flops_per_frame = count_flops(lambda: pipe.decoder(torch.randn(1, 64, window))) / window
    dec_flops = dec_flops_per_frame * T

    ff = nn.Sequential(*[nn.Linear(1024, 4096) if i % 2 == 0 else nn.Linear(4096, 1024) for i in range(8)])
    tokens = torch.randn(1, T + 1, 1024)
    ff_flops = count_flops(lambda: ff(tokens))
    conv = nn.Conv1d(256, 256, 7, padding=3)
    signal = torch.randn(1, 256, 16384)
    conv_flops = count_flops(lambda: conv(signal))
    rates = {"gemm_fp32": litert_rate(ff, tokens, ff_flops, int8=False),
             "gemm_int8": litert_rate(ff, tokens, ff_flops, int8=True),
             "conv_fp32": litert_rate(conv, signal, conv_flops, int8=False)}

    best_rate = max(rates.values()) * 1e9
    dit_floor = 8 * dit_flops / best_rate
    dec_floor = dec_flops / best_rate
    eager = args.eager_s
    floor = dit_floor + dec_floor
    result = {"dit_gflop_per_step": dit_flops / 1e9, "decoder_gflop": dec_flops / 1e9,
              "decoder_gflop_per_frame": dec_flops_per_frame / 1e9, "rates_gflops": rates,
              "best_rate_gflops": best_rate / 1e9, "floor_s": {"dit_8_steps": dit_floor, "decoder_whole": dec_floor, "end_to_end": floor},
              "eager_e2e_s": eager, "target_e2e_s": 0.25 * eager, "floor_x_eager": floor / eager,
              "ttfa_share_floor_at_target": dit_floor / (0.25 * eager)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"work: DiT {dit_flops / 1e9:.1f} GFLOP/step (x8 = {8 * dit_flops / 1e12:.2f} TFLOP), "
          f"decoder {dec_flops / 1e12:.2f} TFLOP for {T} frames")
    print("rates (LiteRT XNNPACK, 2 threads): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()))
    print(f"floors at the best rate ({best_rate / 1e9:.0f} GFLOP/s): DiT 8 steps {dit_floor:.2f} s + decoder "
          f"{dec_floor:.2f} s = {floor:.2f} s = {floor / eager:.2f}x eager {eager:.1f} s "
          f"(target 0.25x = {0.25 * eager:.2f} s)")
    print(f"time to first audio >= DiT floor {dit_floor:.2f} s = {dit_floor / (0.25 * eager):.0%} of an end to end "
          "at the 0.25x target (target <= 35%)")


if __name__ == "__main__":
    main()
