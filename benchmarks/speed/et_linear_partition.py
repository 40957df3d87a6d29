"""How XNNPACK's partitioners share out an ExecuTorch text encoder and DiT: "joint" (one partitioner for float and
dynamically quantized ops, today's layout) against "per-op" (the dynamically quantized partitioner first, then the
float one: the layout before 2026-12-07).

    .venv/bin/python -m benchmarks.speed.et_linear_partition --model random:tiny --recipe int8 --rounds 2 --json out.json

For each component and layout it exports the component (`edgegen.export.executorch.export_component`, the
recipe's rules for the host target), the two layouts interleaved round by round (`benchmarks.common.alternate`)
after a warm-up export of each, and reports the export's wall time, the program's XNNPACK delegate calls and planned
activation arena, and the artifact's size. Then it loads both artifacts and times bare calls of each, interleaved
in blocks of `--calls` (median over all calls after two warm-ups), and gives the SQNR of each against the eager
component on the same inputs: the layout decides only how ops are grouped, so both should agree with it alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import alternate, cpu_line

LAYOUTS = ("joint", "per-op")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--recipe", default="int8")
    ap.add_argument("--components", default="text_encoder,dit")
    ap.add_argument("--rounds", type=int, default=2, help="timed exports per layout (after one warm-up each)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed exports per layout first (0 at full size: the "
                    "first timed export, joint's, then pays for the pattern graphs)")
    ap.add_argument("--calls", type=int, default=20, help="bare calls per block; 4 blocks per layout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import edgegen
    from edgegen import metrics
    from executorch.runtime import Runtime

    from edgegen.export import executorch as et
    from edgegen.export import weight_sharing_copy
    from edgegen.export.wrappers import example_inputs, wrap
    from edgegen.recipes import load_recipe, load_target
    from edgegen.runtime import _set_executorch_threads

    print(cpu_line(), flush=True)
    pipe = edgegen.load_pipeline(args.model)
    target, recipe = load_target("host-executorch"), load_recipe(args.recipe)
    work = Path(tempfile.mkdtemp(prefix="et-linear-partition-"))
    _set_executorch_threads(args.threads)
    rows = []
    for component in args.components.split(","):
        module = getattr(pipe, component)
        rules = recipe.resolved_rules(component, target)
        inputs = example_inputs(pipe, component)
        with torch.no_grad():
            reference = wrap(component, module, half=False)(*inputs)
        reference = reference[0] if isinstance(reference, (tuple, list)) else reference
        paths = {}

        def export(layout: str) -> float:
            et.LINEAR_PARTITION = layout
            path = work / f"{component}-{layout}-{time.monotonic_ns()}.pte"
            start = time.perf_counter()
            et.export_component(component, weight_sharing_copy(module), inputs, path, rules=rules)
            paths[layout] = path
            return time.perf_counter() - start

        for _ in range(args.warmup):  # the pattern graphs and imports, paid once per process
            for layout in LAYOUTS:
                export(layout)
        joint_s, per_op_s = alternate(lambda: export("joint"), lambda: export("per-op"), args.rounds)
        seconds = {"joint": joint_s, "per-op": per_op_s}
        et.LINEAR_PARTITION = "joint"

        methods = {}
        for layout in LAYOUTS:
            method = Runtime.get().load_program(str(paths[layout])).load_method("forward")
            methods[layout] = method
            for _ in range(2):
                method.execute(list(inputs))

        def block(layout: str) -> list[float]:
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                methods[layout].execute(list(inputs))
                times.append(time.perf_counter() - t0)
            return times

        a, b = alternate(lambda: block("joint"), lambda: block("per-op"), 4)
        calls = {"joint": [t for ts in a for t in ts], "per-op": [t for ts in b for t in ts]}
        for layout in LAYOUTS:
            out = methods[layout].execute(list(inputs))[0]
            delegates, arena = et.program_plan(paths[layout])
            row = {"component": component, "layout": layout, "export_s": seconds[layout],
                   "export_s_median": statistics.median(seconds[layout]), "delegates": delegates,
                   "arena_mb": arena / 2**20, "size_mb": paths[layout].stat().st_size / 2**20,
                   "call_s_median": statistics.median(calls[layout]), "call_s_min": min(calls[layout]),
                   "sqnr_db": metrics.sqnr_db(reference, out)}
            rows.append(row)
            print(f"{component:<13}{layout:<8} export {row['export_s_median']:7.1f} s  delegates {delegates:4d}  "
                  f"arena {row['arena_mb']:8.2f} MB  size {row['size_mb']:7.2f} MB  call {row['call_s_median'] * 1e3:8.2f} ms"
                  f"  SQNR {row['sqnr_db']:6.1f} dB", flush=True)
        del methods
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_line(), "model": args.model, "recipe": args.recipe,
                                         "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
