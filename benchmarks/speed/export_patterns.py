"""What an ExecuTorch export pays when XNNPACK's pattern graphs are traced again for every program (issue 35).

    .venv/bin/python -m benchmarks.speed.export_patterns --model random:tiny --recipe fp32 --rounds 3 --json out.json

`executorch._forget_written_program` frees each written program by clearing ExecuTorch's lru caches. Until
2026-12-07 it cleared all of them, among them two that hold constants: XNNPACK's SDPA and bilinear-upsample
pattern graphs, which the partitioner and its passes trace again on the next export. Now a cached function without
arguments is kept. This script exports each component of `--model` in one process, the two ways interleaved round by
round (`benchmarks.common.alternate`), after one warm-up export that builds the patterns for both: "keep" (today)
and "clear" (the old rule, `_takes_arguments` patched to say yes). The difference per export is a fixed cost, the
same for a tiny model and a full-size one; a bundle pays it once per component.
"""

from __future__ import annotations

import statistics

from benchmarks.common import ComponentExports, alternate

COMPONENTS = ComponentExports.COMPONENTS


def main() -> None:
    args = ComponentExports.options(recipe="fp32", rounds=3, threads=2)

    from edgegen.bench import describe_cpu, host_machine
    from edgegen.export import executorch

    exports = ComponentExports(args, prefix="export-patterns-")
    keep_rule = executorch._takes_arguments

    def export(component: str) -> float:
        return exports.export(component)[0]

    def one_round(clear: bool) -> dict[str, float]:
        executorch._takes_arguments = (lambda _: True) if clear else keep_rule
        try:
            return {c: export(c) for c in COMPONENTS}
        finally:
            executorch._takes_arguments = keep_rule

    warm = export("decoder")
    keep, clear = alternate(lambda: one_round(False), lambda: one_round(True), args.rounds)
    rows = {c: {"keep_s": [r[c] for r in keep], "clear_s": [r[c] for r in clear]} for c in COMPONENTS}
    machine = host_machine()
    print(f"{describe_cpu(machine)}; warm-up export {warm:.1f} s")
    print(f"{'component':<14}{'keep (median s)':>17}{'clear (median s)':>18}{'saved s':>9}")
    for c, r in rows.items():
        k, cl = statistics.median(r["keep_s"]), statistics.median(r["clear_s"])
        print(f"{c:<14}{k:>17.1f}{cl:>18.1f}{cl - k:>9.1f}")
    ComponentExports.save(args, machine=machine, warm=warm, rows=rows)


if __name__ == "__main__":
    main()
