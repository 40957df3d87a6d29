"""The decoder per recipe and backend: speed, size and quality of one decoder window, exported as `edgegen export` does.

    .venv/bin/python -m benchmarks.quantization.decoder_int8 --out out/dec.json   # fp32, int8-all, fast; both backends
    .venv/bin/python -m benchmarks.quantization.decoder_int8 --out out/dec.json --window 32 \
        --variants executorch-fp32,executorch-fast
    .venv/bin/python -m benchmarks.quantization.decoder_int8 --out out/dec.json --floors 25,30,35 \
        --variants executorch-fp32,litert-fp32

One `random:sao-small` decoder window (latents the reference sampled from a caption, `--window` frames, default 60)
goes through each backend's own `export_component` (the code `edgegen export` runs: ExecuTorch with 2-D
convolutions, int8 ones XNNPACK's dynamically quantized convolution; LiteRT in the conv form, its int8 Conv1d as
LiteRT's dynamic-range CONV_2D and a quantized ConvTranspose as a GEMM) under the decoder rules of a recipe,
resolved for the backend:
  fp32   every layer float
  int8   every layer (ConvTranspose included) int8 weights per channel + dynamic int8 activations
  fast   quantize/fast.toml's decoder rules (int8 except the layers it keeps float)
  int8w  every layer int8 weights, fp32 compute (the `size` recipe's decoder; LiteRT only)
  fp32-tconv  (LiteRT) fp32 with the ConvTransposes as LiteRT's CONV_2D_TRANSPOSE, the form before they became
         GEMMs (`litert.decoder_gemm_layers`), for the comparison
  gemm-fp32, gemm-int8, gemm-fast  (ExecuTorch) the form before the 2-D convolutions: every convolution an im2col
         GEMM on [B, L, C] (StatefulDecoder layout "nlc", torchao's 8da8w Linears), one stateful call on the
         window from a zero state, compared with the eager stateful decoder on the same call
  floorN (with --floors N,...) the float layers `edgegen sensitivity --floor N` chooses on these weights: the
         sensitivity measurement runs once per backend (simulating its kernels; its wall time is reported: the
         full-size decoder's bound is 10 min), then the fewest float layers meeting each floor; each floor is
         exported and timed on both backends
Each artifact is timed in its runtime (2 threads, best of 3 after a warm-up) and compared with the eager fp32
decoder on the same latents (SQNR and multi-resolution STFT distance). Prints the CPU's int8 features, one line per
variant, the int8 / fp32 speed ratio per backend, and writes --out as JSON. Export time is reported too.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("executorch-fp32", "executorch-int8", "executorch-fast", "litert-fp32", "litert-int8", "litert-fast")
ET_GEMM = {"executorch-gemm-fp32": "executorch-fp32", "executorch-gemm-int8": "executorch-int8",
           "executorch-gemm-fast": "executorch-fast"}  # variant -> the rules it takes


def main() -> None:
    from edgegen.bench import describe_cpu, host_machine
    from edgegen.components.stateful_decoder import StatefulDecoder
    from edgegen.export import executorch as et
    from edgegen.export import litert as lt
    from edgegen.export.wrappers import io_spec
    from edgegen.metrics import compare, mrstft_distance
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import Rule, load_recipe, load_target
    from edgegen.runtime import _executorch, _litert, _set_executorch_threads
    from edgegen.sensitivity import representative_inputs
    from edgegen.weight_cache import WeightCache

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--floors", default="", help="comma-separated SQNR floors (dB): add a floorN variant per backend")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    _set_executorch_threads(2)
    print(f"cpu: {describe_cpu(host_machine())}", flush=True)
    pipe = load_pipeline(args.model)
    x = representative_inputs(pipe, "decoder", prompts=1, frames=args.window)[0][0][0]
    with torch.no_grad():
        ref = pipe.decoder(x)
    spec = io_spec(pipe, "decoder", stream={"window": x.shape[-1]})
    fast = load_recipe("fast")
    rules = {f"{b}-{k}": v for b in ("executorch", "litert") for k, v in (
        ("fp32", (Rule("*", "fp32"),)), ("fp32-tconv", (Rule("*", "fp32"),)), ("int8", (Rule("*", "int8"),)),
        ("int8w", (Rule("*", "int8w"),)),
        ("fast", fast.resolved_rules("decoder", load_target(f"host-{b}"))))}
    variants = [v for v in args.variants.split(",") if v]
    sensitivity = {}
    floors = [float(f) for f in args.floors.split(",") if f]
    for backend in ("executorch", "litert") if floors else ():
        from edgegen.sensitivity import choose_float_layers, float_rules, measure

        start = time.perf_counter()
        result = measure(pipe, "decoder", scheme="int8", backend=backend,
                         progress=lambda line: print(f"  {line}", flush=True))
        sensitivity[f"{backend}-measure_s"] = time.perf_counter() - start
        print(f"sensitivity ({backend}): {len(result.layers)} layers measured in "
              f"{sensitivity[f'{backend}-measure_s']:.0f} s (all int8: {result.all_sqnr_db:.1f} dB)", flush=True)
        for floor in floors:
            start = time.perf_counter()
            chosen = choose_float_layers(result, pipe, floor_db=floor)
            name = f"{backend}-floor{floor:g}"
            rules[name] = float_rules(chosen["float_layers"], "int8")
            sensitivity[name] = {**chosen, "choose_s": time.perf_counter() - start}
            print(f"sensitivity ({backend}): floor {floor:g} dB -> {len(chosen['float_layers'])} float layer(s), "
                  f"simulated {chosen['sqnr_db']:.1f} dB, {chosen['time_share_float']:.1%} of eager time float "
                  f"({sensitivity[name]['choose_s']:.0f} s)", flush=True)
            variants.append(name)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in variants:
            backend = name.split("-", 1)[0]
            start = time.perf_counter()
            module = copy.deepcopy(pipe.decoder)
            inputs, want = [x], ref
            if name in ET_GEMM:
                sd = StatefulDecoder(module, window=x.shape[-1], layout="nlc").eval()
                stream = {"mode": "stateful", "window": x.shape[-1], "state_size": sd.state_size}
                inputs = [x, torch.tensor([0.0, float(x.shape[-1])]), sd.initial_state()]
                with torch.no_grad():
                    want = StatefulDecoder(pipe.decoder, window=x.shape[-1])(*inputs)[0]
                path = Path(tmp) / f"{name}.pte"
                applied, _ = et.export_component("decoder", sd, tuple(inputs), path, rules=rules[ET_GEMM[name]])
                call, _ = _executorch(path, io_spec(pipe, "decoder", stream=stream), 2, "decoder", WeightCache.off())
            elif backend == "executorch":
                path = Path(tmp) / f"{name}.pte"
                applied, _ = et.export_component("decoder", module, (x,), path, rules=rules[name])
                call, _ = _executorch(path, spec, 2, "decoder", WeightCache.off())
            else:
                path = Path(tmp) / f"{name}.tflite"
                gemm_layers = lt.decoder_gemm_layers
                if name.endswith("-tconv"):  # fp32 ConvTransposes left as convolutions
                    lt.decoder_gemm_layers = lambda dec, r: set()
                try:
                    applied, _ = lt.export_component("decoder", module, (x,), path, rules=rules[name])
                finally:
                    lt.decoder_gemm_layers = gemm_layers
                call, _ = _litert(path, spec, 2, "decoder", WeightCache.off())
            export_s = time.perf_counter() - start
            arrays = [t.numpy() for t in inputs]
            call(arrays)
            best, out = float("inf"), None
            for _ in range(3):
                start = time.perf_counter()
                out = call(arrays)
                best = min(best, time.perf_counter() - start)
            got = torch.as_tensor(out[0])
            sqnr = compare(want, got).sqnr_db
            stft = mrstft_distance(want.numpy(), got.numpy())
            schemes = {}
            for scheme in applied.values():
                schemes[scheme] = schemes.get(scheme, 0) + 1
            results[name] = {"seconds": best, "sqnr_db": sqnr, "mrstft": stft, "size_mb": path.stat().st_size / 1e6,
                             "export_s": export_s, "schemes": schemes}
            print(f"{name:<17} {best:7.3f} s per {x.shape[-1]}-frame window   SQNR {sqnr:5.1f} dB   MR-STFT {stft:.4f}   "
                  f"{path.stat().st_size / 1e6:6.1f} MB   {schemes}   (export {export_s:.0f} s)", flush=True)
            args.out.write_text(json.dumps({"cpu": describe_cpu(host_machine()), "window": x.shape[-1], "model": args.model,
                                            "results": results, "sensitivity": sensitivity}, indent=2) + "\n")
    for backend in ("executorch", "litert"):
        for name in [n for n in results if n.startswith(backend + "-") and not n.endswith("-fp32")]:
            base = results.get(f"{backend}-gemm-fp32" if name in ET_GEMM else f"{backend}-fp32")
            if base:
                print(f"{name.replace('-', ' ', 1)}: {base['seconds'] / results[name]['seconds']:.2f}x the fp32 "
                      "decoder's speed", flush=True)


if __name__ == "__main__":
    main()
