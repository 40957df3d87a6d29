"""LiteRT's own dynamic-range convolution for the decoder: the conv form quantized per layer, against the GEMM form.

    .venv/bin/python benchmarks/decoder_conv_drq.py [--window 60] [--out benchmarks/decoder_conv_drq.json]

edgegen's quantized LiteRT decoder today takes the GEMM form (each conv an im2col + FULLY_CONNECTED), because that is
what its per-layer quantization traces. ai-edge-quantizer can also quantize CONV_2D ops (dynamic range: int8
weights per channel, activations quantized on the fly); its CONV_2D_TRANSPOSE quantization fails on these weights,
so ConvTransposes stay float here. This script exports the `random:sao-small` decoder (one window of
reference-sampled latents, as `benchmarks/decoder_int8.py`) in the conv form through edgegen's LiteRT exporter,
then quantizes its CONV_2D ops with ai-edge-quantizer, each op matched to the reference conv it computes by its op
scope, under two rule sets: every conv int8, and `quantize/fast.toml`'s decoder rules. Each variant is timed in the
LiteRT interpreter (2 threads, best of 3 after a warm-up) and compared with the eager fp32 decoder (SQNR,
MR-STFT). A measurement for the next step of issue 13, not an export path: `edgegen export` does not do this yet.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import tempfile
import time
from pathlib import Path

import torch


def conv_scope_names(model_bytes: bytes) -> dict[str, str]:
    """CONV_2D op scope -> the decoder's conv path (`layers.1.layers.2.layers.1`), from litert-torch's scope: one
    `<class>_<attribute>` segment per module call below the wrapper's `decoder` child."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(model_bytes)
    out = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            if tfl.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode) != "CONV_2D":
                continue
            scope = tfl.get_op_scope(op, sg.tensors)
            chain = scope.split(";")[0].split("/")
            attrs = [seg.rsplit("_", 1)[1] for seg in chain[1:]]
            out[scope] = ".".join(attrs[1:])  # drop the wrapper's `decoder`
    return out


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    from edgegen.bench import describe_cpu, host_machine
    from edgegen.components.oobleck import conv_names
    from edgegen.export import litert as lt
    from edgegen.export.litert import _op_config
    from edgegen.metrics import compare, mrstft_distance
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import Rule, load_recipe
    from edgegen.sensitivity import representative_inputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/decoder_conv_drq.json"))
    args = ap.parse_args()
    if args.window < 1:
        ap.error(f"--window must be at least 1 latent frame, got {args.window}")
    torch.set_num_threads(2)
    print(f"cpu: {describe_cpu(host_machine())}", flush=True)
    pipe = load_pipeline("random:sao-small")
    x = representative_inputs(pipe, "decoder", prompts=1, frames=args.window)[0][0][0]
    with torch.no_grad():
        ref = pipe.decoder(x)
    names = set(conv_names(pipe.decoder))
    fast = load_recipe("fast").components["decoder"].rules

    def rule_for(name: str) -> Rule | None:
        return next((r for r in fast if r.matches(name)), None)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        variants = {}
        start = time.perf_counter()
        gemm = Path(tmp) / "gemm-fast.tflite"
        lt.export_component("decoder", copy.deepcopy(pipe.decoder), (x,), gemm, rules=fast)
        variants["GEMM form, fast (today's export)"] = (gemm.read_bytes(), time.perf_counter() - start)
        start = time.perf_counter()
        conv = Path(tmp) / "conv.tflite"
        lt.export_component("decoder", copy.deepcopy(pipe.decoder), (x,), conv, rules=(Rule("*", "fp32"),))
        data = conv.read_bytes()
        variants["conv form, fp32"] = (data, time.perf_counter() - start)
        scopes = conv_scope_names(data)
        unknown = sorted(set(scopes.values()) - names)
        if unknown:
            raise SystemExit(f"CONV_2D scopes not traced to the decoder's convs: {unknown[:3]}")
        for label, quantized in (("conv form, every Conv1d int8 (ConvTransposes float)", lambda n: True),
                                 ("conv form, fast's rules (ConvTransposes float)",
                                  lambda n: (rule_for(n) is not None and rule_for(n).scheme == "int8"))):
            start = time.perf_counter()
            rm = recipe_manager.RecipeManager()
            chosen = [s for s, n in scopes.items() if quantized(n)]
            for scope in chosen:
                rm.add_quantization_config(regex=f"^{re.escape(scope)}$", operation_name=qtyping.TFLOperationName.CONV_2D,
                                           op_config=_op_config("int8", 0))
            q = bytes(quantizer.Quantizer(data, rm.get_quantization_recipe()).quantize().quantized_model)
            variants[f"{label}: {len(chosen)} of {len(scopes)} convs int8"] = (q, time.perf_counter() - start)
        for label, (buf, export_s) in variants.items():
            runner = Interpreter(model_content=buf, num_threads=2).get_signature_runner()
            key = next(iter(runner.get_input_details()))
            a = x.numpy()
            runner(**{key: a})
            best, out = float("inf"), None
            for _ in range(3):
                t = time.perf_counter()
                out = runner(**{key: a})
                best = min(best, time.perf_counter() - t)
            got = torch.as_tensor(next(iter(out.values())))
            row = {"seconds": best, "sqnr_db": compare(ref, got).sqnr_db,
                   "mrstft": mrstft_distance(ref.numpy(), got.numpy()), "size_mb": len(buf) / 1e6, "prepare_s": export_s}
            results[label] = row
            print(f"{label:<70} {best:6.3f} s  SQNR {row['sqnr_db']:5.1f} dB  MR-STFT {row['mrstft']:.4f}  "
                  f"{row['size_mb']:6.1f} MB", flush=True)
    base = results["conv form, fp32"]["seconds"]
    for label, row in results.items():
        print(f"{label}: {base / row['seconds']:.2f}x the fp32 conv form's speed", flush=True)
    args.out.write_text(json.dumps({"cpu": describe_cpu(host_machine()), "window": args.window, "results": results},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
