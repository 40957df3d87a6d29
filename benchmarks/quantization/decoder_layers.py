"""Where an int8 decoder's time goes: representative GEMMs of the decoder's GEMM form, fp32 vs dynamic int8, alone.

    .venv/bin/python -m benchmarks.quantization.decoder_layers --out out/layers.json [--backends executorch,litert]

Each row is one convolution of SAO-small's decoder as the GEMM form runs it for one 60-frame window (rows = the
window's frames at that layer's rate; in = kernel taps x input channels; out = output channels, x 2 stride for a
ConvTranspose), exported alone through the same backend code `edgegen export` uses (ExecuTorch: torchao + XNNPACK;
LiteRT: litert-torch + ai-edge-quantizer dynamic range) and timed in its runtime (2 threads, best of 5 after a
warm-up). Prints the CPU's int8 features, seconds fp32 / int8 per layer and the ratio, and the layer's MACs, so a
layer whose int8 form gains less than its share of the work shows up.
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

# name, rows (60-frame window), in features, out features; SAO-small decoder (channels 128 x [1, 2, 4, 8, 16],
# strides 2, 4, 4, 8, 8 from the latent side: 8, 8, 4, 4, 2)
LAYERS = (
    ("input conv 64->2048 k7", 60, 7 * 64, 2048),
    ("ConvTranspose 1 2048->1024 s8", 60, 2048, 16 * 1024),
    ("block 1 conv k7 1024", 480, 7 * 1024, 1024),
    ("block 1 conv 1x1 1024", 480, 1024, 1024),
    ("ConvTranspose 2 1024->512 s8", 480, 1024, 16 * 512),
    ("block 2 conv k7 512", 3840, 7 * 512, 512),
    ("ConvTranspose 5 128->128 s2", 61440, 128, 4 * 128),
    ("block 5 conv k7 128", 122880, 7 * 128, 128),
    ("block 5 conv 1x1 128", 122880, 128, 128),
)


def _time(call, x, iters: int = 5) -> float:
    call(x)
    best = float("inf")
    for _ in range(iters):
        t = time.perf_counter()
        call(x)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    from edgegen.bench import describe_cpu, host_machine
    from edgegen.export import executorch as et
    from edgegen.export import litert as lt
    from edgegen.recipes import Rule
    from edgegen.runtime import _set_executorch_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="executorch,litert")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    _set_executorch_threads(2)
    print(f"cpu: {describe_cpu(host_machine())}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, m, k, n in LAYERS:
            torch.manual_seed(0)
            lin = nn.Sequential(nn.Linear(k, n))
            x = torch.randn(1, m, k)
            row = {"layer": name, "rows": m, "in": k, "out": n, "gmacs": m * k * n / 1e9}
            for backend in args.backends.split(","):
                for scheme in ("fp32", "int8"):
                    path = Path(tmp) / f"l.{backend}.{scheme}"
                    rules = (Rule("*", scheme),)
                    row[f"{backend}_{scheme}_s"] = _export_and_time(backend, lin, x, path, rules, et, lt)
            rows.append(row)
            cells = "  ".join(f"{b} fp32 {row[f'{b}_fp32_s'] * 1e3:7.1f} ms int8 {row[f'{b}_int8_s'] * 1e3:7.1f} ms "
                              f"({row[f'{b}_fp32_s'] / row[f'{b}_int8_s']:.2f}x)" for b in args.backends.split(","))
            print(f"{name:34s} {row['gmacs']:6.2f} GMAC  {cells}", flush=True)
    args.out.write_text(json.dumps({"cpu": describe_cpu(host_machine()), "rows": rows}, indent=1))


def _export_and_time(backend, lin, x, path, rules, et, lt) -> float:
    import copy

    module = copy.deepcopy(lin)
    if backend == "executorch":
        from executorch.runtime import Runtime

        if rules[0].scheme != "fp32":
            et.quantize_executorch(module, lambda name: rules[0])
        et.export_pte(module, (x,), path.with_suffix(".pte"))
        method = Runtime.get().load_program(str(path.with_suffix(".pte"))).load_method("forward")
        return _time(lambda a: method.execute([a]), x)
    from ai_edge_litert.interpreter import Interpreter

    lt.export_tflite(module, (x,), path.with_suffix(".tflite"), rules=rules)
    runner = Interpreter(model_path=str(path.with_suffix(".tflite")), num_threads=2).get_signature_runner()
    key = next(iter(runner.get_input_details()))
    a = x.numpy()
    return _time(lambda v: runner(**{key: v}), a)


if __name__ == "__main__":
    main()
