"""What more than one benchmark script needs: a reader of /proc/<pid>/status, the interleaving that times two
things round by round in one process, the machine's CPU line, a timed export of one component, and the ExecuTorch
component exports two scripts time.

    from benchmarks.common import ComponentExports, alternate, cpu_line, harness_generation, status, timed_export

Scripts import this module, never each other's helpers; run them from the repository root as
`python -m benchmarks.<group>.<script>` so `benchmarks` is importable (`benchmarks/README.md`).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
from pathlib import Path

FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def status(pid: int | str = "self") -> dict[str, int]:
    """MB of each of FIELDS for this process, or for process `pid` ({} once it has gone; `export_memory.py` samples
    a child with it). Linux only."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, value = line.split(":", 1)
                if key in FIELDS:
                    out[key] = int(value.split()[0]) // 1024
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return out


def alternate(first, second, rounds: int) -> tuple[list, list]:
    """`rounds` x (first(), second()), the order swapped every other round (so neither always runs in the other's
    wake); the results of each, in round order."""
    a, b = [], []
    for r in range(rounds):
        if r % 2:
            b.append(second())
            a.append(first())
        else:
            a.append(first())
            b.append(second())
    return a, b


def harness_generation(bp, seconds: float):
    """One generation through edgegen's harness (an open `BundlePipeline`), timed as `edgegen bench` times it: an
    edgegen.bench.Iteration."""
    from edgegen.bench import PROMPT, _measure
    from edgegen.request import GenerateRequest

    return _measure(lambda t: bp.generate(GenerateRequest(PROMPT, seconds=seconds, seed=0), timings=t),
                    sample_rate=bp.sample_rate, iters=1, warmup=0)[0]


def cpu_line() -> str:
    """The CPU model and its int8 dot-product flags (lscpu), and the torch thread count."""
    import torch

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    model = re.search(r"Model name:\s*(.+)", out)
    flags = set(re.search(r"Flags:\s*(.+)", out).group(1).split()) if "Flags:" in out else set()
    vnni = [f for f in ("avx512_vnni", "avx_vnni") if f in flags]
    return (f"{model.group(1).strip() if model else platform.processor() or 'unknown CPU'}; {os.cpu_count()} cores; "
            f"int8 flags: {', '.join(vnni) or 'none of avx512_vnni/avx_vnni'}; torch threads {torch.get_num_threads()}")


def timed_export(pipe, *, target, recipe, component: str, out: Path) -> float:
    """Seconds of one unverified export of `pipe`'s `component` alone into `out` (a new folder): the lowering."""
    import time

    from edgegen.export import export_bundle

    start = time.perf_counter()
    export_bundle(pipe, target=target, recipe=recipe, out=out, components=(component,), verify=False)
    return time.perf_counter() - start


class ComponentExports:
    """Unverified ExecuTorch exports of one component at a time, each timed, for the scripts that compare two ways of
    lowering (`speed/export_patterns.py`, `speed/export_provenance.py`). `options` parses their shared command line
    (--model --recipe --rounds --threads --json) and sets torch's thread count."""

    COMPONENTS = ("text_encoder", "dit", "decoder")

    @staticmethod
    def options(*, recipe: str, rounds: int, threads: int) -> argparse.Namespace:
        import torch

        ap = argparse.ArgumentParser()
        ap.add_argument("--model", default="random:tiny")
        ap.add_argument("--recipe", default=recipe)
        ap.add_argument("--rounds", type=int, default=rounds)
        ap.add_argument("--threads", type=int, default=threads)
        ap.add_argument("--json", type=Path)
        args = ap.parse_args()
        torch.set_num_threads(args.threads)
        return args

    def __init__(self, args: argparse.Namespace, prefix: str):
        import tempfile

        import edgegen
        from edgegen.recipes import load_recipe, load_target

        self.pipe = edgegen.load_pipeline(args.model)
        self.target, self.recipe = load_target("host-executorch"), load_recipe(args.recipe)
        self.work = Path(tempfile.mkdtemp(prefix=prefix))

    def export(self, component: str) -> tuple[float, Path]:
        """(seconds, the .pte written) of one export of `component` alone into a new folder."""
        import time

        out = self.work / f"{component}-{time.monotonic_ns()}"
        seconds = timed_export(self.pipe, target=self.target, recipe=self.recipe, component=component, out=out)
        return seconds, out / f"{component}.pte"

    @staticmethod
    def save(args: argparse.Namespace, *, machine: dict, warm: float, rows: dict) -> None:
        """Write the run's record to --json (when given): the settings, the machine, the warm-up and each
        component's timings."""
        import json

        if args.json:
            args.json.write_text(json.dumps({"model": args.model, "recipe": args.recipe, "rounds": args.rounds,
                                             "threads": args.threads, "machine": machine, "warm_up_s": warm,
                                             "components": rows}, indent=1))
