"""What the inspecting commands report, as functions: `edgegen info`, `parity` and `bench`, on this machine or (with
`use_adb`) on a phone through the native runner.

    print(describe(model="random:tiny"))                                 # or describe(bundle=Path("b"))
    passed = run_parity(bundle=Path("b"), model="random:tiny", show=print)   # the table; False: a gate failed
    result = run_bench(bundle=Path("b"), iters=3)                        # edgegen.bench/1; format_bench(result)

Option combinations that mean nothing are refused before anything loads, each with one EdgegenError line naming the
options. `log` gets the progress lines a user sees on stderr.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from edgegen.errors import EdgegenError


def _quiet(line: str) -> None:
    pass


def describe(*, bundle: Path | None = None, model: str | None = None, t5: Path | None = None,
             t5_precision: str = "fp16") -> str:
    """A model's facts and parameter counts, or a bundle's manifest (every checksum verified)."""
    if (bundle is None) == (model is None):
        raise EdgegenError("give either a bundle (--bundle B, or B alone) or --model M")
    if model is not None:
        from edgegen.pipeline import load_pipeline

        return describe_model(load_pipeline(model, t5=t5, t5_precision=t5_precision))
    from edgegen.bundle import describe_bundle

    return describe_bundle(bundle)


def list_choices() -> str:
    """`edgegen list`: the built-in models, target profiles and recipes, each with its one-line description."""
    from edgegen.common import BUILTIN_MODELS
    from edgegen.recipes import load_recipe, load_target, recipe_names, target_names

    lines = ["built-in models (--model; also a model folder or a Hugging Face repo id in the local cache):"]
    lines += [f"  {name:<20}{what}" for name, what in BUILTIN_MODELS.items()]
    lines += ["", "target profiles (export --target; also a .toml path):"]
    lines += [f"  {name:<28}{load_target(name).description}" for name in target_names()]
    lines += ["", "quantization recipes (export --recipe; also a .toml path):"]
    lines += [f"  {name:<10}{load_recipe(name).description}" for name in recipe_names()]
    return "\n".join(lines)


def describe_model(pipe) -> str:
    rows = [(name, sum(p.numel() for p in m.parameters())) for name, m in pipe.modules().items()]
    cfg = pipe.config
    lines = [f"source          {pipe.source.model}", f"t5              {pipe.source.t5} (weights {pipe.source.t5_precision})",
             f"objective       {cfg.diffusion_objective}",
             f"sample rate     {pipe.sample_rate} Hz, 2 channels",
             f"latent length   {pipe.latent_length} x {cfg.dit.io_channels} ({pipe.max_seconds:.2f} s max)",
             f"dit             {cfg.dit.depth} blocks x {cfg.dit.embed_dim} wide, {cfg.dit.num_heads} heads",
             "parameters:"]
    lines += [f"  {name:<14}{n:>14,}" for name, n in rows]
    lines.append(f"  {'total':<14}{sum(n for _, n in rows):>14,}")
    return "\n".join(lines)


@contextlib.contextmanager
def _on_device(bundle: Path, *, adb_path: str, serial: str | None, runner_dir: Path) -> Iterator[tuple]:
    """(Bundle, Device): the bundle opened (a .zip's unpacked copy removed on leaving) and the phone checked."""
    from edgegen.adb import preflight
    from edgegen.bundle import open_bundle

    with open_bundle(bundle) as b:
        yield b, preflight(adb_path=adb_path, serial=serial, bundle=b, runner_dir=runner_dir)


def run_parity(*, bundle: Path, model: str, t5: Path | None = None, t5_precision: str = "fp16", seed: int = 0,
               json_path: Path | None = None, threads: int | None = None, use_adb: bool = False,
               serial: str | None = None, runner_dir: Path | None = None, adb_path: str = "adb",
               log: Callable[[str], None] = _quiet, show: Callable[[str], None] = _quiet) -> bool:
    """Every artifact of `bundle` against the PyTorch component of `model` it came from: `show` the report, write
    it to `json_path` (checked before any work, written atomically); True when every gate passed."""
    from edgegen.parity import check_parity, check_report_path, format_report, write_report
    from edgegen.pipeline import load_pipeline

    if json_path:
        check_report_path(json_path, inputs={"--bundle": bundle, "--model": model, "--t5": t5})
    if use_adb:
        from edgegen.adb import device_parity

        with _on_device(bundle, adb_path=adb_path, serial=serial, runner_dir=runner_dir) as (b, dev):
            log(f"device {dev.serial} ({dev.abi})")
            report = device_parity(b, load_pipeline(model, t5=t5, t5_precision=t5_precision), device=dev,
                                   runner_dir=runner_dir, seed=seed, threads=threads, on_stage=log)
    else:  # a path: check_parity compares the bundle's source with the model's before loading its artifacts
        report = check_parity(bundle, load_pipeline(model, t5=t5, t5_precision=t5_precision), seed=seed,
                              threads=threads)
    show(format_report(report))
    if json_path:
        write_report(json_path, report)
    return bool(report.passed)


def run_bench(*, bundle: Path | None = None, model: str | None = None, t5: Path | None = None,
              t5_precision: str = "fp16", iters: int = 3, warmup: int = 1, threads: int | None = None,
              seconds: float | None = None, low_memory: bool = False, weight_cache: Path | None = None,
              no_weight_cache: bool = False, init_audio: Path | None = None, init_noise_level: float | None = None,
              use_adb: bool = False, serial: str | None = None, runner_dir: Path | None = None,
              adb_path: str = "adb", log: Callable[[str], None] = _quiet) -> dict:
    """The edgegen.bench/1 result of timing `bundle` here (or on the phone, `use_adb`) or `model`'s eager pipeline
    (on `threads` torch threads when given: this sets torch's process-wide count). `log` gets one line per
    iteration."""
    from edgegen.bench import bench_bundle, bench_model
    from edgegen.init_audio import read_init

    if (bundle is None) == (model is None) or (use_adb and bundle is None):
        raise EdgegenError("--adb times a bundle on the phone: give --bundle B" if use_adb
                           else "give exactly one of --bundle B or --model M")
    if low_memory and (bundle is None or use_adb):
        raise EdgegenError("--low-memory applies to a bundle run on this machine (--bundle B, without --adb)")
    if (weight_cache is not None or no_weight_cache) and (bundle is None or use_adb):
        raise EdgegenError("--weight-cache / --no-weight-cache apply to a bundle run on this machine (--bundle B, "
                           "without --adb; the phone's runner keeps its own cache)")
    if init_audio is not None and bundle is None:
        raise EdgegenError("--init-audio times a bundle's audio-to-audio: give --bundle B (exported with "
                           "--audio-to-audio)")
    init, level = read_init(init_audio, init_noise_level)
    tick = lambda i: log(f"iteration {i + 1}/{warmup + iters}")  # noqa: E731
    if use_adb:
        from edgegen.adb import device_bench

        with _on_device(bundle, adb_path=adb_path, serial=serial, runner_dir=runner_dir) as (b, dev):
            return device_bench(b, device=dev, runner_dir=runner_dir, iters=iters, warmup=warmup, threads=threads,
                                seconds=seconds, init_audio=init, init_noise_level=level, on_iter=tick)
    if bundle is not None:
        from edgegen.weight_cache import WeightCache

        return bench_bundle(bundle, iters=iters, warmup=warmup, threads=threads, seconds=seconds,
                            low_memory=low_memory, init_audio=init, init_noise_level=level,
                            weight_cache=WeightCache.from_options(weight_cache, off=no_weight_cache), on_iter=tick)
    if threads:  # the eager pipeline runs on torch's thread count, which `bench_model` reports
        import torch

        torch.set_num_threads(threads)
    return bench_model(model, t5=t5, t5_precision=t5_precision, iters=iters, warmup=warmup, seconds=seconds,
                       on_iter=tick)
