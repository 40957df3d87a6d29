"""Where a bundle generation's memory goes: RSS split into anonymous and file pages at each stage, and the peak.

    .venv/bin/python -m benchmarks.memory.memory_stages out/sao-litert-int8                 # artifacts resident
    .venv/bin/python -m benchmarks.memory.memory_stages out/sao-litert-int8 --low-memory    # each stage loads its own
    .venv/bin/python -m benchmarks.memory.memory_stages out/sao-litert-int8 --weight-cache DIR   # LiteRT: XNNPACK cache
    .venv/bin/python -m benchmarks.memory.memory_stages out/sao-litert-int8 --import-torch  # what torch alone adds

A thread samples /proc/self/status every 20 ms (VmRSS, RssAnon, RssFile, VmHWM) and keeps the sample with the
highest RSS and the stage it fell in; the stage marks come from wrapping BundlePipeline's DiT and decoder calls.
RssFile counts the model files' mapped pages (and the Python/torch libraries), RssAnon the runtime's heap:
XNNPACK's packed weights, activations, torch. The LiteRT path imports no torch (since 2026-12-01); --import-torch
imports it first, as every edgegen process did before. Linux only. One generation of --seconds; memory does not depend
on the machine's speed, so this may run beside other work (timings may not).
"""

from __future__ import annotations

import argparse
import threading
import time

from benchmarks.common import FIELDS, status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--low-memory", action="store_true")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--weight-cache", default=None, metavar="DIR",
                    help="LiteRT: XNNPACK weight cache folder (default: none, weights packed in memory)")
    ap.add_argument("--import-torch", action="store_true", help="import torch first (the pre-2026-12-01 path)")
    args = ap.parse_args()

    stage, marks, peak = ["python"], [], {"VmRSS": 0}

    def watch():
        while True:
            s = status()
            if s["VmRSS"] > peak["VmRSS"]:
                peak.update(s, stage=stage[0])
            time.sleep(0.02)

    def mark(name: str) -> None:
        stage[0] = name
        marks.append((name, status()))

    threading.Thread(target=watch, daemon=True).start()
    mark("python")
    if args.import_torch:
        import torch  # noqa: F401

        mark("import torch")
    import sys

    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.request import GenerateRequest
    from edgegen.weight_cache import WeightCache

    cache = WeightCache.resolve(args.weight_cache) if args.weight_cache else WeightCache.off()
    bp = BundlePipeline.open(args.bundle, low_memory=args.low_memory, weight_cache=cache)
    mark("open")
    velocity, decode_chunks = bp.velocity, bp.decode_chunks

    def timed_velocity(*a):
        if stage[0] != "dit":
            mark("text encoder done, dit")
        return velocity(*a)

    def timed_decode(*a, **k):
        mark("dit done, decoder")
        yield from decode_chunks(*a, **k)

    bp.velocity, bp.decode_chunks = timed_velocity, timed_decode
    bp.generate(GenerateRequest("warm lo-fi piano loop with soft drums", seconds=args.seconds, seed=0))
    mark("done")
    time.sleep(0.1)
    print(f"{args.bundle} ({'low memory' if args.low_memory else 'artifacts resident'}; weight cache "
          f"{bp.weight_cache_use}; torch {'loaded' if 'torch' in sys.modules else 'not loaded'}), MB:")
    for name, s in marks:
        print(f"  {name:<24} " + "  ".join(f"{k} {s[k]:>5}" for k in FIELDS))
    print(f"  peak (in {peak['stage']}) " + "  ".join(f"{k} {peak[k]:>5}" for k in FIELDS))


if __name__ == "__main__":
    main()
