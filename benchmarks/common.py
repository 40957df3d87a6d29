"""What more than one benchmark script needs: a reader of /proc/<pid>/status, the interleaving that times two
things round by round in one process, and the machine's CPU line.

    from benchmarks.common import alternate, cpu_line, harness_generation, status

Scripts import this module, never each other's helpers; run them from the repository root as
`python -m benchmarks.<group>.<script>` so `benchmarks` is importable (`benchmarks/README.md`).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess

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
