"""Attempt record: dynamic int8 for the decoder's convolutions, speed and quality, both backends.

    .venv/bin/python benchmarks/decoder_int8.py            # ~8 min on 2 cores (four full-size decoder exports)

One random:sao-small decoder window (60 latent frames, the streamed bundles' window) exported four ways:
  executorch fp32  the channels-last GEMM form (as `edgegen export` writes it)
  executorch int8  the same form with every Linear (= every conv) torchao 8da8w
  litert fp32      the conv form (as `edgegen export` writes it)
  litert int8      the channels-last GEMM form, every FULLY_CONNECTED dynamic-range int8
Each is timed in its runtime (2 threads, best of 3 after a warm-up) and compared with the eager fp32 decoder
(SQNR). Prints one line per variant and writes --out as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("executorch-fp32", "executorch-int8", "litert-fp32", "litert-int8")


def main() -> None:
    from edgegen.components.oobleck import ChannelsLastDecoder
    from edgegen.export import executorch as et
    from edgegen.export import litert as lt
    from edgegen.export.wrappers import io_spec, wrap
    from edgegen.metrics import compare
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import Rule
    from edgegen.runtime import _executorch, _litert, _set_executorch_threads

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/decoder_int8.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    _set_executorch_threads(2)
    pipe = load_pipeline("random:sao-small")
    x = torch.randn(1, 64, args.window, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = pipe.decoder(x)
    spec = io_spec(pipe, "decoder", stream={"window": args.window})
    int8, fp32 = Rule("*", "int8"), Rule("*", "fp32")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            backend, scheme = name.split("-")
            module = copy.deepcopy(pipe.decoder)
            start = time.perf_counter()
            if backend == "executorch":
                module = ChannelsLastDecoder(module).eval()
                if scheme == "int8":
                    et.quantize_executorch(module, lambda fqn: int8)
                path = Path(tmp) / f"{name}.pte"
                et.export_pte(wrap("decoder", module), (x,), path)
                call = _executorch(path, spec, 2)
            else:
                if scheme == "int8":  # FULLY_CONNECTED is what LiteRT's dynamic-range int8 path quantizes
                    module = ChannelsLastDecoder(module).eval()
                path = Path(tmp) / f"{name}.tflite"
                lt.export_tflite(wrap("decoder", module), (x,), path, rules=(int8 if scheme == "int8" else fp32,))
                call = _litert(path, spec, 2)
            export_s = time.perf_counter() - start
            call([x.numpy()])
            best, out = float("inf"), None
            for _ in range(3):
                start = time.perf_counter()
                out = call([x.numpy()])
                best = min(best, time.perf_counter() - start)
            sqnr = compare(ref, torch.as_tensor(out[0])).sqnr_db
            results[name] = {"seconds": best, "sqnr_db": sqnr, "size_mb": path.stat().st_size / 1e6,
                             "export_s": export_s}
            print(f"{name:<17} {best:7.3f} s per {args.window}-frame window   SQNR {sqnr:5.1f} dB   "
                  f"{path.stat().st_size / 1e6:6.1f} MB   (export {export_s:.0f} s)", flush=True)
            args.out.write_text(json.dumps({"window": args.window, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
