"""A bundle's DiT artifact timed as bare runtime calls: the yardstick for the harness's DiT step (issue 14, item 2).

    .venv/bin/python benchmarks/bare_dit.py out/sao-litert-int8 --threads 2 --calls 16 --json

Loads only `dit.*` with the runtime's own Python API (ai_edge_litert's `Interpreter` + signature runner, or
ExecuTorch's `Runtime` + method), feeds it arrays of the manifest's shapes and dtypes, and reports the median of
`--calls` calls after two warm-up calls (the first packs XNNPACK's weights). Nothing of edgegen's runtime layer is
on the path: no input checks, no tensor conversion, no page release. The DiT does the same work whatever the values
(no data-dependent branches), so random inputs time what the sampler's calls cost. `benchmarks/suite.py` runs it
right after each bundle's `edgegen bench`, so the two are back to back.

    .venv/bin/python benchmarks/bare_dit.py out/sao-litert-int8 --against-harness --rounds 4 --seconds 10 --json

`--against-harness` interleaves the two in one process: each round runs one generation through edgegen's harness
(`BundlePipeline`, as `edgegen bench` opens it: the default weight cache) and `--calls` bare calls of a second,
separately loaded copy of the DiT, the order alternating between rounds. This VM's speed drifts by up to 30% between
minutes (and an ExecuTorch DiT step measured 0.12 s in one process and 0.145 s in the next, both ways), so the
harness/bare ratio of two processes run one after the other mixes the drift into the overhead; interleaved within
seconds, it does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

_DTYPES = {"float32": np.float32, "int32": np.int32}


def _inputs(spec: dict, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    from edgegen.bundle import call_order  # the call's input order, as the harness and the native runner read it

    out = []
    for i in call_order(spec["inputs"]):
        shape, dtype = i["shape"], _DTYPES[i["dtype"]]
        if i["name"] == "t":  # a noise level in (0, 1), as the sampler passes
            a = np.full(shape, 0.5, dtype)
        else:
            a = rng.standard_normal(shape).astype(dtype)
        out.append((i["name"], a))
    return out


def _litert(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner()
    return lambda named: runner(**dict(named))


def _executorch(path: Path, threads: int):
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return lambda named: method.execute([torch.from_numpy(a) for _, a in named])


def time_dit(bundle: Path, *, threads: int, calls: int) -> dict:
    from edgegen.bundle import open_bundle

    with open_bundle(bundle) as b:  # the manifest read and every artifact's sha256 checked, as `edgegen bench` does
        manifest, dit_path = b.manifest, b.path("dit")
    spec = manifest["artifacts"]["dit"]
    load = _litert if manifest["backend"] == "litert" else _executorch
    start = time.perf_counter()
    call = load(dit_path, threads)
    load_s = time.perf_counter() - start
    named = _inputs(spec, np.random.default_rng(0))
    for _ in range(2):
        call(named)
    times = _time_calls(call, named, calls)
    return {"bundle": str(bundle), "backend": manifest["backend"], "threads": threads, "calls": calls,
            "load_s": load_s, "dit_step_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def _time_calls(call, named, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call(named)
        times.append(time.perf_counter() - t0)
    return times


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
    """One generation through edgegen's harness, timed as `edgegen bench` times it: an edgegen.bench.Iteration."""
    from edgegen.bench import PROMPT, _measure
    from edgegen.request import GenerateRequest

    return _measure(lambda t: bp.generate(GenerateRequest(PROMPT, seconds=seconds, seed=0), timings=t),
                    sample_rate=bp.sample_rate, iters=1, warmup=0)[0]


def against_harness(bundle: Path, *, threads: int, calls: int, rounds: int, seconds: float | None) -> dict:
    """`rounds` x (one harness generation, `calls` bare DiT calls), alternating which goes first; medians over all
    steps / calls, and each round's ratio of medians."""
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.weight_cache import WeightCache

    with BundlePipeline.open(bundle, threads=threads, weight_cache=WeightCache.resolve(None)) as bp:
        backend = bp.bundle.manifest["backend"]
        spec, dit_path = bp.bundle.manifest["artifacts"]["dit"], bp.bundle.path("dit")
        seconds = bp.max_seconds if seconds is None else seconds
        bp.check_seconds(seconds)  # before the second copy of the DiT loads
        call = (_litert if backend == "litert" else _executorch)(dit_path, threads)
        named = _inputs(spec, np.random.default_rng(0))
        harness = lambda: harness_generation(bp, seconds).dit_steps  # noqa: E731
        bare = lambda: _time_calls(call, named, calls)  # noqa: E731
        harness(), bare()  # warm-up: weights packed or mapped, first-call allocations made
        hs, bs = alternate(harness, bare, rounds)
    med_h = statistics.median(x for h in hs for x in h)
    med_b = statistics.median(x for b in bs for x in b)
    return {"bundle": str(bundle), "backend": backend, "threads": threads, "rounds": rounds, "calls": calls,
            "seconds": seconds, "harness_dit_step_s": med_h, "dit_step_s": med_b, "ratio": med_h / med_b,
            "round_ratios": [statistics.median(h) / statistics.median(b) for h, b in zip(hs, bs)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=16)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--against-harness", action="store_true",
                    help="interleave bare calls with generations through edgegen's harness in this process")
    ap.add_argument("--rounds", type=int, default=4, help="--against-harness: rounds of (generation, bare calls)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="--against-harness: seconds of audio per generation (default: the bundle's maximum)")
    args = ap.parse_args()
    if args.calls < 1 or args.rounds < 1:
        ap.error("--calls and --rounds must be at least 1")
    if not (args.bundle / "manifest.json").is_file():
        sys.exit(f"error: {args.bundle} has no manifest.json; pass a bundle folder written by `edgegen export`")
    from edgegen.errors import EdgegenError

    try:
        if args.against_harness:
            r = against_harness(args.bundle, threads=args.threads, calls=args.calls, rounds=args.rounds,
                                seconds=args.seconds)
        else:
            r = time_dit(args.bundle, threads=args.threads, calls=args.calls)
    except EdgegenError as exc:
        sys.exit(f"error: {exc}")
    if args.against_harness:
        print(json.dumps(r) if args.json else
              f"DiT step ({r['backend']}, {r['threads']} threads, {r['rounds']} interleaved rounds): harness "
              f"{r['harness_dit_step_s']:.3f} s, bare {r['dit_step_s']:.3f} s = {r['ratio']:.2f}x (rounds: "
              + ", ".join(f"{x:.2f}" for x in r["round_ratios"]) + ")")
        return
    print(json.dumps(r) if args.json else
          f"bare DiT ({r['backend']}, {r['threads']} threads): median {r['dit_step_s']:.3f} s per call over "
          f"{r['calls']} calls (min {r['min_s']:.3f}, max {r['max_s']:.3f}); load {r['load_s']:.2f} s")


if __name__ == "__main__":
    main()
