"""Timing a generation, the same way for a bundle (its runtime) and for the eager PyTorch pipeline.

    result = bench_bundle("bundle_dir", iters=3, warmup=1)     # or bench_model("random:sao-small", ...)
    print(format_bench(result)); print(json.dumps(result))      # the CLI's last stdout line is this JSON

Per iteration: text encoder, every DiT step, decoder, end to end (generation only; load is timed once).
Reported values are medians over `iters` after `warmup` untimed runs. Peak RSS is the process' high-water
mark (`ru_maxrss`), so run one configuration per process when comparing memory.
"""

from __future__ import annotations

import platform
import resource
import statistics
import time

import numpy as np

BENCH_SCHEMA = "edgegen.bench/1"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(generate, *, seconds: float, iters: int, warmup: int, on_iter=lambda i: None) -> dict:
    from edgegen.pipeline import Timings

    runs = []
    for i in range(warmup + iters):
        t = Timings()
        start = time.perf_counter()
        wav = generate(t)
        e2e = time.perf_counter() - start
        if i >= warmup:
            runs.append((t, e2e, wav.shape[1]))
        on_iter(i)
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    stages = {k: med([r[0].stages[k] for r in runs]) for k in ("text_encoder", "dit", "decoder")}
    e2e = med([r[1] for r in runs])
    audio_s = runs[0][2] / 44100
    ttfa = med([r[0].stages.get("first_audio", r[1]) for r in runs])
    return {"e2e_s": e2e, "rtf": e2e / audio_s, "time_to_first_audio_s": ttfa, "stages": stages,
            "dit_step_s": med([s for r in runs for s in r[0].dit_steps]), "audio_seconds": audio_s,
            "iters": iters, "warmup": warmup, "e2e_runs_s": [r[1] for r in runs]}


def _machine() -> dict:
    import os

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def bench_bundle(path, *, iters: int = 3, warmup: int = 1, threads: int | None = None, seconds: float = 10.0,
                 prompt: str = "warm lo-fi piano loop with soft drums", low_memory: bool = False,
                 on_iter=lambda i: None) -> dict:
    """With `low_memory`, every generation loads and drops each artifact; its stage times include that."""
    from edgegen.bundle_pipeline import BundlePipeline

    bp = BundlePipeline.open(path, threads=threads, low_memory=low_memory)
    seconds = min(seconds, bp.max_seconds)
    result = _measure(lambda t: bp.generate(prompt, seconds_total=seconds, seed=0, timings=t),
                      seconds=seconds, iters=iters, warmup=warmup, on_iter=on_iter)
    m = bp.bundle.manifest
    return {"schema": BENCH_SCHEMA, "kind": "bundle", "backend": m["backend"], "recipe": m["recipe"]["name"],
            "target": m["target"]["name"], "bundle": str(path), "threads": threads or m["target"].get("threads"),
            "low_memory": low_memory, "load_s": bp.load_s, **result, "stages": {"load": bp.load_s, **result["stages"]},
            "peak_rss_mb": _peak_rss_mb(), **_machine()}


def bench_model(model, *, t5=None, iters: int = 3, warmup: int = 1, threads: int | None = None,
                seconds: float = 10.0, prompt: str = "warm lo-fi piano loop with soft drums",
                on_iter=lambda i: None) -> dict:
    import torch

    from edgegen.pipeline import load_pipeline

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    pipe = load_pipeline(model, t5=t5)
    load_s = time.perf_counter() - start
    seconds = min(seconds, pipe.max_seconds)
    result = _measure(lambda t: pipe.generate(prompt, seconds_total=seconds, seed=0, timings=t),
                      seconds=seconds, iters=iters, warmup=warmup, on_iter=on_iter)
    return {"schema": BENCH_SCHEMA, "kind": "eager", "backend": "pytorch-eager", "recipe": "fp32",
            "target": "host", "model": str(model), "threads": torch.get_num_threads(), "load_s": load_s,
            **result, "stages": {"load": load_s, **result["stages"]}, "peak_rss_mb": _peak_rss_mb(), **_machine()}


def format_bench(r: dict) -> str:
    what = r.get("bundle") or r.get("model")
    st = r["stages"]
    mode = ", low memory: stages load their artifact" if r.get("low_memory") else ""
    lines = [f"bench  {what}  ({r['backend']}, recipe {r['recipe']}, {r['threads']} threads{mode}, "
             f"median of {r['iters']} after {r['warmup']} warmup)",
             f"  load            {st['load']:8.3f} s",
             f"  text encoder    {st['text_encoder']:8.3f} s",
             f"  dit             {st['dit']:8.3f} s   ({r['dit_step_s']:.3f} s/step)",
             f"  decoder         {st['decoder']:8.3f} s",
             f"  end to end      {r['e2e_s']:8.3f} s   for {r['audio_seconds']:.2f} s of audio (RTF {r['rtf']:.2f})",
             f"  first audio     {r['time_to_first_audio_s']:8.3f} s",
             f"  peak RSS        {r['peak_rss_mb']:8.0f} MB"]
    return "\n".join(lines)
