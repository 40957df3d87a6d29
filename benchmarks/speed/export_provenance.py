"""What torch.fx's provenance copying costs an ExecuTorch export, and what sharing it saves (issue 35).

    .venv/bin/python -m benchmarks.speed.export_provenance --model random:tiny --recipe int8 --rounds 2 --json out.json

Each node an fx pass re-creates records where it came from (`meta["from_node"]`), and torch 2.13 deep-copies the
source's whole record chain for it; the chain grows by one link per pass. `executorch.shared_provenance` shares the
records instead. This script exports each component of `--model` in one process, the two ways interleaved round by
round (`benchmarks.common.alternate`), after one warm-up export (XNNPACK's pattern graphs): "shared" (today) and
"deep" (`executorch.SHARED_PROVENANCE = False`, torch's own behaviour), and checks that both write the same bytes.
"""

from __future__ import annotations

import statistics

from benchmarks.common import ComponentExports, alternate

COMPONENTS = ComponentExports.COMPONENTS


def main() -> None:
    args = ComponentExports.options(recipe="int8", rounds=2, threads=1)

    from edgegen.bench import describe_cpu, host_machine
    from edgegen.common import sha256_file
    from edgegen.export import executorch

    exports = ComponentExports(args, prefix="export-provenance-")
    digests: dict[tuple[str, bool], set[str]] = {}

    def export(component: str, shared: bool) -> float:
        executorch.SHARED_PROVENANCE = shared
        try:
            seconds, pte = exports.export(component)
        finally:
            executorch.SHARED_PROVENANCE = True
        digests.setdefault((component, shared), set()).add(sha256_file(pte))
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
    ComponentExports.save(args, machine=machine, warm=warm, rows=rows)


if __name__ == "__main__":
    main()
