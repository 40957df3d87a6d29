"""One full-size component through the LiteRT export, standard and `lightweight_conversion`: peak memory, time,
and whether the two files compute the same thing.

    .venv/bin/python -m benchmarks.memory.litert_convert_memory --component dit --recipe int8 --out out/convertmem

Each mode runs in its own process (`--mode`, VmHWM is that process' own peak), on random:sao-small with the
export's weight-sharing copy, as `edgegen export` does. Then, in this process: file sizes, op counts, byte
equality, and both artifacts run in LiteRT on the component's example inputs against the eager reference (SQNR).
Memory does not depend on speed; the times are only comparable on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import status


def child(args) -> None:
    import edgegen
    from edgegen.export import litert, weight_sharing_copy
    from edgegen.export.wrappers import example_inputs
    from edgegen.recipes import load_recipe, load_target

    pipe = edgegen.load_pipeline(args.model)
    pipe.release("encoder")
    litert.LIGHTWEIGHT_CONVERSION = args.mode == "lightweight"
    module = weight_sharing_copy(getattr(pipe, args.component))
    rules = load_recipe(args.recipe).resolved_rules(args.component, load_target("host-litert"))
    start = time.perf_counter()
    litert.export_component(args.component, module, example_inputs(pipe, args.component), args.path, rules=rules)
    seconds = time.perf_counter() - start
    print(json.dumps({"mode": args.mode, "peak_mb": status()["VmHWM"], "convert_s": round(seconds, 1)}))


def op_counts(path: Path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    counts: dict[str, int] = {}
    for op in Interpreter(model_path=str(path))._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--component", default="dit", choices=("text_encoder", "dit"))
    ap.add_argument("--recipe", default="int8")
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--out", type=Path, default=Path("out/convertmem"))
    ap.add_argument("--mode", choices=("standard", "lightweight"), help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        return child(args)
    from edgegen.errors import EdgegenError
    from edgegen.recipes import load_recipe

    try:  # refused here in one line rather than in each child's traceback
        load_recipe(args.recipe)
    except EdgegenError as exc:
        ap.error(str(exc))
    if not args.model.startswith("random:") and not Path(args.model).is_dir():
        ap.error(f"model folder not found: {args.model}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, paths = [], {}
    for mode in ("standard", "lightweight"):
        paths[mode] = args.out / f"{args.component}-{args.recipe}-{mode}.tflite"
        res = subprocess.run([sys.executable, "-m", "benchmarks.memory.litert_convert_memory",
                              "--component", args.component, "--recipe", args.recipe,
                              "--model", args.model, "--mode", mode, "--path", str(paths[mode])],
                             capture_output=True, text=True)
        if res.returncode != 0:  # nothing to compare: the converter's last line, and the child's exit code
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            sys.exit(f"litert_convert_memory.py: the {mode} conversion failed: {last}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    done = [r["mode"] for r in rows]
    import numpy as np
    import torch

    import edgegen
    from edgegen.export.wrappers import example_inputs, io_spec
    from edgegen.metrics import compare

    a, b = (paths[m].read_bytes() for m in done)
    print(f"byte-identical: {a == b}; sizes {len(a) / 1e6:.1f} / {len(b) / 1e6:.1f} MB")
    counts = {m: op_counts(paths[m]) for m in done}
    print(f"op counts equal: {counts['standard'] == counts['lightweight']}")
    if counts["standard"] != counts["lightweight"]:
        print(json.dumps(counts, indent=1))
    pipe = edgegen.load_pipeline(args.model)
    ex = example_inputs(pipe, args.component)
    with torch.no_grad():
        ref = getattr(pipe, args.component)(*ex)
    ref = ref if isinstance(ref, tuple) else (ref,)
    from ai_edge_litert.interpreter import Interpreter

    names = [i["name"] for i in io_spec(pipe, args.component)["inputs"]]
    for m in done:
        interp = Interpreter(model_path=str(paths[m]), num_threads=2)
        runner = interp.get_signature_runner()
        got = runner(**{n: np.ascontiguousarray(x.numpy()) for n, x in zip(names, ex)})
        outs = [got[k] for k in sorted(got)]
        sq = [round(compare(r, torch.from_numpy(np.asarray(o)).reshape(r.shape)).sqnr_db, 2)
              for r, o in zip(ref, outs)]
        print(f"{m}: SQNR vs eager {sq}")
    print("\n| mode | peak RSS MB | convert s |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['peak_mb']} | {r['convert_s']} |")


if __name__ == "__main__":
    main()
