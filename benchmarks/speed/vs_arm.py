"""An edgegen bundle against Arm's recipe, generations interleaved in one process (issue 14's "x Arm" targets).

    .venv/bin/python -m benchmarks.speed.vs_arm out/suite/random-sao-small-litert-fast --arm out/suite/arm-litert \
        --rounds 4 --seconds 10 --json

`--arm` is a folder `benchmarks/speed/arm_recipe.py` exported (Arm's recipe built Arm's way, on the bundle's weights;
the suite makes it). One process loads both: the bundle through edgegen's harness (`BundlePipeline`, as `edgegen
bench` opens it: the default weight cache) and Arm's three files in ai_edge_litert's Interpreter, timed as Arm's app
runs them (`arm_recipe.load_generation`). After one warm-up generation of each, every round runs one generation of
each, the order alternating between rounds. This VM's speed drifts by up to 30% between minutes; two rows timed
minutes apart carry that drift into their ratio (the suite's `fast` row measured 0.49x and 0.53x of Arm's recipe in
two runs of the same bundles), rounds a few seconds apart do not. Reported: each side's median end to end and stages,
the ratio of the medians and each round's ratio. Memory is not measured here: both models are resident in this process
(the suite's rows measure each alone). edgegen's end to end is `edgegen bench`'s (prompt tokenised and noise drawn in
each generation); Arm's recipe tokenises once at load, as its app does: a few milliseconds in Arm's favour.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import alternate, harness_generation


def interleave(bundle: Path, arm: Path, *, rounds: int, seconds: float | None, threads: int) -> dict:
    from benchmarks.speed import arm_recipe  # imports torch: only once the arguments are checked
    from edgegen.bundle import read_manifest
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.errors import EdgegenError
    from edgegen.weight_cache import WeightCache

    m = read_manifest(bundle)  # what it is, before loading anything
    if m.backend != "litert":
        raise EdgegenError(f"{bundle}: an {m.backend} bundle; Arm's recipe is built for LiteRT here, so pass a "
                           "LiteRT bundle")
    if not (arm / "source.json").is_file():
        raise EdgegenError(f"{arm} holds no export of Arm's recipe (no source.json); make one with "
                           f"python -m benchmarks.speed.arm_recipe --out {arm}")
    info = arm_recipe.exported(arm, {"checkpoint_sha256": m.source.checkpoint_sha256})
    if info is None:
        raise EdgegenError(f"{arm} holds Arm's recipe of another checkpoint than {bundle} ({m.source.model}), "
                           "or an unfinished export: compare the same weights "
                           "(python -m benchmarks.speed.arm_recipe --model ...)")
    with BundlePipeline.open(bundle, threads=threads, weight_cache=WeightCache.resolve(None)) as bp:
        seconds = bp.max_seconds if seconds is None else seconds
        bp.check_seconds(seconds)
        _, arm_generate = arm_recipe.load_generation(arm_recipe.artifact_paths(arm), info, threads=threads)

        def ours() -> dict:
            it = harness_generation(bp, seconds)
            return {"e2e": it.e2e_s, "dit_step": statistics.median(it.dit_steps), "first_audio": it.first_audio_s,
                    **{k: it.stages[k] for k in ("text_encoder", "dit", "decoder")}}

        ours(), arm_generate()  # warm-up
        mine, theirs = alternate(ours, arm_generate, rounds)
    med = lambda runs: {k: statistics.median(x[k] for x in runs) for k in runs[0]}  # noqa: E731
    e, arm_med = med(mine), med(theirs)
    return {"schema": "edgegen.vs-arm/1", "bundle": str(bundle), "recipe": m.recipe.name, "arm": str(arm),
            "threads": threads, "rounds": rounds, "seconds": seconds, "edgegen": e, "arm_recipe": arm_med,
            "edgegen_e2e_runs_s": [x["e2e"] for x in mine], "arm_e2e_runs_s": [x["e2e"] for x in theirs],
            "ratio": e["e2e"] / arm_med["e2e"], "round_ratios": [a["e2e"] / b["e2e"] for a, b in zip(mine, theirs)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="a LiteRT bundle folder written by `edgegen export`")
    ap.add_argument("--arm", type=Path, required=True, help="the folder benchmarks/speed/arm_recipe.py exported into")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=None,
                    help="edgegen's generation length (default: the bundle's maximum; Arm's recipe decodes the whole "
                         "sequence whatever it is asked for)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if not (args.bundle / "manifest.json").is_file():
        ap.error(f"{args.bundle} has no manifest.json; pass a bundle folder written by `edgegen export`")
    from edgegen.errors import EdgegenError

    try:
        r = interleave(args.bundle, args.arm, rounds=args.rounds, seconds=args.seconds, threads=args.threads)
    except EdgegenError as exc:
        sys.exit(f"error: {exc}")
    if args.json:
        print(json.dumps(r))
        return
    e, a = r["edgegen"], r["arm_recipe"]
    print(f"{r['bundle']} ({r['recipe']}) vs Arm's recipe, {r['rounds']} interleaved rounds, {r['threads']} threads:\n"
          f"  edgegen     end to end {e['e2e']:.2f} s (DiT {e['dit_step']:.3f} s/step, decoder {e['decoder']:.2f} s)\n"
          f"  Arm recipe  end to end {a['e2e']:.2f} s (DiT {a['dit_step']:.3f} s/step, decoder {a['decoder']:.2f} s)\n"
          f"  ratio {r['ratio']:.2f}x (rounds: " + ", ".join(f"{x:.2f}" for x in r["round_ratios"]) + ")")


if __name__ == "__main__":
    main()
