"""Timing a generation, the same way for a bundle (its runtime), the eager PyTorch pipeline and a phone.

    result = bench_bundle("bundle_dir", iters=3, warmup=1)     # or bench_model("random:sao-small", ...)
    print(format_bench(result)); print(json.dumps(result))      # the CLI's last stdout line is this JSON

Per iteration: the encoder (audio-to-audio only), text encoder, every DiT step, decoder, end to end (generation only; load is timed once, or per run
on a phone). Wherever the timings came from (`Timings` here, the native runner's JSON over adb), `bench_result`
turns the timed `Iteration`s into the one edgegen.bench/1 result: medians over `iters` after `warmup` untimed runs.
Peak RSS is the process' high-water mark (`ru_maxrss`), so run one configuration per process when comparing memory.
Process state (torch's thread count) is the caller's: the CLI sets it, these functions only read it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgegen.common import Timings, default_seconds, peak_rss_mb
from edgegen.request import GenerateRequest
from edgegen.xnnpack import precision_report, read_cpuinfo

BENCH_SCHEMA = "edgegen.bench/1"
STAGES = ("text_encoder", "dit", "decoder")
ENCODER_STAGE = "encoder"  # timed when the generation starts from init audio (audio-to-audio)
PROMPT = "warm lo-fi piano loop with soft drums"


@dataclass(frozen=True)
class Iteration:
    """One timed generation, wherever it ran."""
    e2e_s: float
    stages: dict[str, float]     # STAGES, "encoder" for audio-to-audio, "load" where every run loads (native runner)
    dit_steps: list[float]
    first_audio_s: float
    frames: int
    sample_rate: int
    peak_rss_mb: float           # the process' high-water mark after this run


def bench_result(runs: list[Iteration], *, warmup: int, load_s: float | None = None, **identity) -> dict:
    """The edgegen.bench/1 result for the timed `runs` (warmup excluded); `identity` (kind, backend, recipe,
    target, bundle or model, threads, machine fields, ...) is copied in. `load_s`: timed once, else each run's."""
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    load = load_s if load_s is not None else med([r.stages["load"] for r in runs])
    e2e = med([r.e2e_s for r in runs])
    audio_s = runs[0].frames / runs[0].sample_rate
    head = {k: identity.pop(k) for k in ("kind", "backend", "recipe", "target", "bundle", "model", "threads",
                                          "low_memory") if k in identity}
    if "int8_features" in identity:  # the CPU that ran it: int8 dot products, and whether the bundle needed them
        identity["int8_dot_product"] = int8_dot_product(identity["int8_features"])
        warning = int8_warning(identity.get("int8_layers", {}), identity["int8_features"])
        identity["warnings"] = [warning] if warning else []
    return {"schema": BENCH_SCHEMA, **head, "load_s": load, "e2e_s": e2e, "rtf": e2e / audio_s,
            "time_to_first_audio_s": med([r.first_audio_s for r in runs]),
            "stages": {"load": load, **{k: med([r.stages[k] for r in runs]) for k in _stages(runs)}},
            "dit_step_s": med([s for r in runs for s in r.dit_steps]), "audio_seconds": audio_s,
            "iters": len(runs), "warmup": warmup, "e2e_runs_s": [r.e2e_s for r in runs],
            "peak_rss_mb": max(r.peak_rss_mb for r in runs), **identity}


def _stages(runs: list[Iteration]) -> tuple[str, ...]:
    """STAGES, with the encoder first when every run timed it."""
    return ((ENCODER_STAGE,) if all(ENCODER_STAGE in r.stages for r in runs) else ()) + STAGES


def _measure(generate: Callable[[Timings], object], *, sample_rate: int, iters: int, warmup: int,
             on_iter=lambda i: None) -> list[Iteration]:
    """`generate(timings)` -> audio [2, n], `warmup + iters` times; the timed iterations."""
    runs = []
    for i in range(warmup + iters):
        t = Timings()
        start = time.perf_counter()
        wav = generate(t)
        e2e = time.perf_counter() - start
        if i >= warmup:
            stages = {k: t.stages[k] for k in (ENCODER_STAGE, *STAGES) if k in t.stages}
            runs.append(Iteration(e2e_s=e2e, stages=stages, dit_steps=list(t.dit_steps),
                                  first_audio_s=t.stages.get("first_audio", e2e), frames=wav.shape[1],
                                  sample_rate=sample_rate, peak_rss_mb=peak_rss_mb()))
        on_iter(i)
    return runs


# CPU features int8 kernels use (x86: VNNI dot products, AVX-512; Arm: dotprod = asimddp, i8mm, SME2). int8 speed
# depends on them, so every benchmark reports them beside its timings.
INT8_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512f", "avx2", "asimddp", "i8mm", "sme2")
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sme2")  # where int8 beats fp32


def int8_features(cpuinfo: str) -> list[str]:
    """The INT8_FEATURES present in /proc/cpuinfo's text (x86 `flags`, Arm `Features`), in INT8_FEATURES order."""
    have = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            have.update(value.split())
    return [f for f in INT8_FEATURES if f in have]


def int8_dot_product(features: list[str]) -> list[str]:
    """The features in `features` that give int8 dot-product kernels."""
    return [f for f in features if f in INT8_DOT_PRODUCT]


def describe_int8(features: list[str]) -> str:
    """One line for reports: the features and whether int8 dot products are there."""
    return (f"int8 features: {', '.join(features) or 'none'} "
            f"(int8 dot product: {', '.join(int8_dot_product(features)) or 'NO'})")


INT8_COMPUTE = ("int8", "int4")  # recipe schemes with dynamic int8 activations: int8 matrix kernels


def int8_layers(manifest) -> dict[str, int]:
    """Per artifact of a bundle's manifest, its layers that compute in int8 (none: left out)."""
    counts = {name: sum(n for scheme, n in (a.schemes or {}).items() if scheme in INT8_COMPUTE)
              for name, a in manifest.artifacts.items()}
    return {name: n for name, n in counts.items() if n}


def int8_warning(layers: dict[str, int], features: list[str]) -> str | None:
    """One line when a bundle computes in int8 (`layers`, from int8_layers) on a CPU whose `features` give no int8
    dot products, where int8 kernels are not faster than fp32 (an AVX2-only x86: benchmarks/JOURNAL.md)."""
    if not layers or int8_dot_product(features):
        return None
    which = ", ".join(f"{n} in the {name}" for name, n in layers.items())
    return (f"this CPU has no int8 dot-product instructions (x86 AVX-512 VNNI or AVX-VNNI, Arm asimddp or i8mm): "
            f"the bundle's int8 layers ({which}) will not run faster than fp32 here")


def describe_cpu(machine: dict) -> str:
    """`processor; int8 features: ...` for a host_machine() dict or a bench result."""
    return f"{machine.get('processor') or machine.get('machine')}; {describe_int8(machine.get('int8_features') or [])}"


def host_machine() -> dict:
    cpuinfo = read_cpuinfo()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), None)
    return {"machine": platform.machine(), "processor": model or platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "int8_features": int8_features(cpuinfo)}


def bench_bundle(path, *, iters: int = 3, warmup: int = 1, threads: int | None = None, seconds: float | None = None,
                 prompt: str = PROMPT, low_memory: bool = False, init_audio=None, init_noise_level: float = 1.0,
                 weight_cache=None, on_iter=lambda i: None) -> dict:
    """`seconds`: the bundle's maximum when None, else refused out of range (like `run`). With `low_memory`, every
    generation loads and drops each artifact; its stage times include that. `init_audio` (sample_rate, audio):
    audio-to-audio at `init_noise_level`, the encoder stage timed (its load and release included: the encoder is
    resident only for its stage). `weight_cache`: LiteRT's XNNPACK weight cache (edgegen.weight_cache; None: off);
    the result says what it did ("weight_cache": built / hit / off, and per component)."""
    from edgegen.bundle_pipeline import BundlePipeline

    with BundlePipeline.open(path, threads=threads, low_memory=low_memory, audio_to_audio=init_audio is not None,
                             weight_cache=weight_cache) as bp:  # removes a zip's unpacked copy
        seconds = default_seconds(bp.max_seconds) if seconds is None else seconds
        bp.check_seconds(seconds)
        request = GenerateRequest(prompt, seconds=seconds, init_audio=init_audio, init_noise_level=init_noise_level)
        runs = _measure(lambda t: bp.generate(request, timings=t),
                        sample_rate=bp.sample_rate, iters=iters, warmup=warmup, on_iter=on_iter)
    m = bp.bundle.manifest
    extra = {"init_noise_level": init_noise_level} if init_audio is not None else {}
    extra["decoded_latent_frames"] = bp.decoded_latent_frames(runs[0].frames)
    extra["weight_cache"], extra["weight_cache_components"] = bp.weight_cache_use, dict(bp.cache_uses)
    return bench_result(runs, warmup=warmup, load_s=bp.load_s, kind="bundle", backend=m.backend,
                        recipe=m.recipe.name, target=m.target.name, bundle=str(path),
                        threads=threads or m.target.threads, low_memory=low_memory, **extra,
                        int8_layers=int8_layers(m), precision=precision_report(m, read_cpuinfo()), **host_machine())


def bench_model(model, *, t5=None, t5_precision: str = "fp16", iters: int = 3, warmup: int = 1,
                seconds: float | None = None,
                prompt: str = PROMPT, on_iter=lambda i: None) -> dict:
    """The eager pipeline on torch's current thread count (set it before: `torch.set_num_threads`)."""
    import torch

    from edgegen.pipeline import load_pipeline

    start = time.perf_counter()
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    load_s = time.perf_counter() - start
    seconds = default_seconds(pipe.max_seconds) if seconds is None else seconds
    pipe.check_seconds(seconds)
    runs = _measure(lambda t: pipe.generate(GenerateRequest(prompt, seconds=seconds), timings=t),
                    sample_rate=pipe.sample_rate, iters=iters, warmup=warmup, on_iter=on_iter)
    return bench_result(runs, warmup=warmup, load_s=load_s, kind="eager", backend="pytorch-eager", recipe="fp32",
                        target="host", model=str(model), decoded_latent_frames=pipe.latent_length,
                        threads=torch.get_num_threads(), **host_machine())


def format_bench(r: dict) -> str:
    what = r.get("bundle") or r.get("model")
    st = r["stages"]
    mode = ", low memory: stages load their artifact" if r.get("low_memory") else ""
    lines = [f"bench  {what}  ({r['backend']}, recipe {r['recipe']}, {r['threads']} threads{mode}, "
             f"median of {r['iters']} after {r['warmup']} warmup)",
             f"  load            {st['load']:8.3f} s",
             *([f"  encoder         {st['encoder']:8.3f} s   (audio-to-audio, S = {r.get('init_noise_level', 1):g})"]
               if "encoder" in st else []),
             f"  text encoder    {st['text_encoder']:8.3f} s",
             f"  dit             {st['dit']:8.3f} s   ({r['dit_step_s']:.3f} s/step)",
             f"  decoder         {st['decoder']:8.3f} s" + (f"   ({r['decoded_latent_frames']} latent frames decoded)"
                                                           if "decoded_latent_frames" in r else ""),
             f"  end to end      {r['e2e_s']:8.3f} s   for {r['audio_seconds']:.2f} s of audio (RTF {r['rtf']:.2f})",
             f"  first audio     {r['time_to_first_audio_s']:8.3f} s",
             f"  peak RSS        {r['peak_rss_mb']:8.0f} MB"
             + (f"   (XNNPACK weight cache: {r['weight_cache']})" if "weight_cache" in r else "")]
    if "int8_features" in r:
        lines.append(f"  cpu             {describe_cpu(r)}")
    if "precision" in r:
        lines.append("  precision       " + ", ".join(
            f"{c} {p['precision']}" + (f" (asked {p['asked']}: {p['why']})" if "asked" in p else "")
            for c, p in r["precision"].items()))
    lines += [f"  warning         {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)
