"""What random:tiny's VAE depth costs an export (issue 35): its two-block VAE against the five blocks it had before.

    .venv/bin/python -m benchmarks.speed.tiny_vae_depth --rounds 2 --json out.json

The suite exports random:tiny's decoder in most of its bundles, and a lowering's time goes with the number of nodes
(per convolution and Snake, not per weight). random:tiny had SAO-small's five VAE blocks (37 decoder layers) at width
8; since 2026-12-07 it has two (16 layers; strides 32 then 64, the same 2048-sample hop). This script builds both in
one process (the five-block one as `random:tiny` was, same seed) and exports each one's decoder and encoder alone
for both backends under `fp32` and `fast`, the two depths interleaved round by round (`benchmarks.common.alternate`)
after one warm-up export per backend. Unverified exports: the lowering is what is timed.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import alternate, timed_export

CASES = [(backend, recipe, component) for backend in ("executorch", "litert") for recipe in ("fp32", "fast")
         for component in ("decoder", "encoder") if not (component == "encoder" and recipe == "fast")]


def five_block_tiny() -> str:
    """Register `random:tiny-five-block` (random:tiny with SAO-small's VAE stride stack) and return its name."""
    from edgegen import presets

    from edgegen.components.oobleck import OOBLECK_CONFIGS

    sao = OOBLECK_CONFIGS["sao-small"]
    cfg = copy.deepcopy(presets.PRESETS["tiny"][0])
    for part in ("encoder", "decoder"):
        cfg["model"]["pretransform"]["config"][part]["config"].update(c_mults=list(sao.c_mults),
                                                                      strides=list(sao.strides))
    presets.PRESETS["tiny-five-block"] = (cfg, presets.PRESETS["tiny"][1])
    return "random:tiny-five-block"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import edgegen
    from edgegen.bench import describe_cpu, host_machine
    from edgegen.recipes import load_recipe, load_target

    pipes = {"two": edgegen.load_pipeline("random:tiny"), "five": edgegen.load_pipeline(five_block_tiny())}
    work = Path(tempfile.mkdtemp(prefix="tiny-vae-depth-"))

    def export(depth: str, backend: str, recipe: str, component: str) -> float:
        out = work / f"{depth}-{backend}-{recipe}-{component}-{time.monotonic_ns()}"
        return timed_export(pipes[depth], target=load_target(f"host-{backend}"), recipe=load_recipe(recipe),
                            component=component, out=out)

    warm = {b: export("two", b, "fp32", "text_encoder") for b in ("executorch", "litert")}
    two, five = alternate(lambda: {c: export("two", *c) for c in CASES},
                          lambda: {c: export("five", *c) for c in CASES}, args.rounds)
    machine = host_machine()
    print(f"{describe_cpu(machine)}; {args.threads} thread(s); warm-up exports "
          + ", ".join(f"{b} {s:.1f} s" for b, s in warm.items()))
    print(f"{'backend':<12}{'recipe':<7}{'component':<10}{'five blocks (s)':>16}{'two blocks (s)':>15}{'saved':>7}")
    rows = []
    for c in CASES:
        f, t = statistics.median(r[c] for r in five), statistics.median(r[c] for r in two)
        print(f"{c[0]:<12}{c[1]:<7}{c[2]:<10}{f:>16.1f}{t:>15.1f}{(f - t) / f:>7.0%}")
        rows.append({"backend": c[0], "recipe": c[1], "component": c[2], "five_blocks_s": [r[c] for r in five],
                     "two_blocks_s": [r[c] for r in two]})
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "threads": args.threads, "machine": machine,
                                         "warm_up_s": warm, "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
