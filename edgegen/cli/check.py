"""`edgegen info`, `parity` and `bench`: describe, check and time a model or bundle (edgegen.reports)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgegen.errors import EdgegenError

from edgegen.cli import (MODEL_HELP, adb_options, bundle_option, err, init_audio_options, low_memory_option, main,
                         model_option, seconds_option, t5_option, t5_precision_option, threads_option,
                         weight_cache_options)


@main.command()
@click.argument("bundle_arg", metavar="[BUNDLE]", required=False, type=click.Path(path_type=Path))
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=None,
              help="Bundle folder or .zip to describe (every checksum verified); BUNDLE is the same.")
@click.option("--model", "-m", default=None, help="Describe a model instead. " + MODEL_HELP)
@t5_option
@t5_precision_option
def info(bundle_arg, bundle, model, t5, t5_precision):
    """Describe a bundle (--bundle, or BUNDLE: verifies every checksum) or a model (--model)."""
    from edgegen.reports import describe

    if bundle and bundle_arg:
        raise EdgegenError("give the bundle once: BUNDLE or --bundle")
    click.echo(describe(bundle=bundle or bundle_arg, model=model, t5=t5, t5_precision=t5_precision))


@main.command("list")
def list_cmd():
    """The built-in models, target profiles and quantization recipes that --model, --target and --recipe accept."""
    from edgegen.reports import list_choices

    click.echo(list_choices())


@main.command()
@bundle_option
@model_option
@t5_option
@t5_precision_option
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the generations compared end to end.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON (checked before any work, written atomically).")
@threads_option
@adb_options("run")
def parity(bundle, model, t5, t5_precision, seed, json_path, threads, use_adb, serial, runner_dir, adb_path):
    """Compare every artifact with the PyTorch component it came from. Exit 0 pass, 1 a gate failed, 2 bad input."""
    from edgegen.reports import run_parity

    passed = run_parity(bundle=bundle, model=model, t5=t5, t5_precision=t5_precision, seed=seed, json_path=json_path,
                        threads=threads, use_adb=use_adb, serial=serial, runner_dir=runner_dir, adb_path=adb_path,
                        log=err, show=click.echo)
    sys.exit(0 if passed else 1)


@main.command()
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=None, help="Time a bundle.")
@click.option("--model", "-m", default=None, help="Time the eager PyTorch pipeline of a model instead. " + MODEL_HELP)
@t5_option
@t5_precision_option
@click.option("--iters", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Timed generations (median, min and max are reported).")
@click.option("--warmup", type=click.IntRange(0, 100), default=1, show_default=True,
              help="Untimed generations first (XNNPACK packs its weights in the first).")
@threads_option
@seconds_option
@low_memory_option
@weight_cache_options
@init_audio_options
@adb_options("time")
def bench(bundle, model, t5, t5_precision, iters, warmup, threads, seconds, low_memory, weight_cache, no_weight_cache,
          init_audio, init_noise_level, use_adb, serial, runner_dir, adb_path):
    """Time load, (encoder,) text encoder, DiT, decoder and end to end; the last stdout line is one JSON object."""
    import json

    from edgegen.bench import format_bench
    from edgegen.reports import run_bench

    result = run_bench(bundle=bundle, model=model, t5=t5, t5_precision=t5_precision, iters=iters, warmup=warmup,
                       threads=threads, seconds=seconds, low_memory=low_memory, weight_cache=weight_cache,
                       no_weight_cache=no_weight_cache, init_audio=init_audio, init_noise_level=init_noise_level,
                       use_adb=use_adb, serial=serial, runner_dir=runner_dir, adb_path=adb_path, log=err)
    click.echo(format_bench(result))
    click.echo(json.dumps(result))
