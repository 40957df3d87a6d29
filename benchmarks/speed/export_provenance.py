"""What torch.fx's provenance copying costs an ExecuTorch export, and what sharing it saves (issue 35).

    .venv/bin/python -m benchmarks.speed.export_provenance --model random:tiny --recipe int8 --rounds 2 --json out.json

Each node an fx pass re-creates records where it came from (`meta["from_node"]`), and torch 2.13 deep-copies the
source's whole record chain for it; the chain grows by one link per pass. `executorch.shared_provenance` shares the
records instead. This script exports each component of `--model` in one process, the two ways interleaved round by
round (`benchmarks.common.alternate`), after one warm-up export (XNNPACK's pattern graphs): "shared" (today) and
"deep" (`executorch.SHARED_PROVENANCE = False`, torch's own behaviour), and checks that both write the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import alternate

COMPONENTS = ("text_encoder", "dit", "decoder")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--recipe", default="int8")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import edgegen
    from edgegen.bench import describe_cpu, host_machine
    from edgegen.export import executorch, export_bundle
    from edgegen.recipes import load_recipe, load_target

    pipe = edgegen.load_pipeline(args.model)
    target, recipe = load_target("host-executorch"), load_recipe(args.recipe)
    work = Path(tempfile.mkdtemp(prefix="export-provenance-"))
    digests: dict[tuple[str, bool], set[str]] = {}

    def export(component: str, shared: bool) -> float:
        executorch.SHARED_PROVENANCE = shared
        out = work / f"{component}-{time.monotonic_ns()}"
        start = time.perf_counter()
        try:
            export_bundle(pipe, target=target, recipe=recipe, out=out, components=(component,), verify=False)
        finally:
            executorch.SHARED_PROVENANCE = True
        seconds = time.perf_counter() - start
        digest = hashlib.sha256(next(out.glob("*.pte")).read_bytes()).hexdigest()
        digests.setdefault((component, shared), set()).add(digest)
        return seconds

    warm = export("text_encoder", True)
    shared, deep = alternate(lambda: {c: export(c, True) for c in COMPONENTS},
                             lambda: {c: export(c, False) for c in COMPONENTS}, args.rounds)
    identical = {c: len(digests[(c, True)] | digests[(c, False)]) == 1 for c in COMPONENTS}
    rows = {c: {"shared_s": [r[c] for r in shared], "deep_s": [r[c] for r in deep], "identical_bytes": identical[c]}
            for c in COMPONENTS}
    machine = host_machine()
    print(f"{describe_cpu(machine)}; {args.model} {args.recipe}, {args.threads} thread(s); warm-up export {warm:.1f} s")
    print(f"{'component':<14}{'shared (median s)':>19}{'deep (median s)':>17}{'saved':>8}{'same bytes':>12}")
    for c, r in rows.items():
        s, d = statistics.median(r["shared_s"]), statistics.median(r["deep_s"])
        print(f"{c:<14}{s:>19.1f}{d:>17.1f}{(d - s) / d:>8.0%}{str(r['identical_bytes']):>12}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "recipe": args.recipe, "rounds": args.rounds,
                                         "threads": args.threads, "machine": machine, "warm_up_s": warm,
                                         "components": rows}, indent=1))


if __name__ == "__main__":
    main()
