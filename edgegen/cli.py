"""The `edgegen` command: a thin shell over the library; every command is a few lines calling one function."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from pathlib import Path

import click

from edgegen.errors import EdgegenError


class _Group(click.Group):
    """Turns EdgegenError into one line on stderr and exit status 2; warnings become one line each."""

    def invoke(self, ctx):
        def one_line(message, category, filename, lineno, file=None, line=None):
            if category is UserWarning:  # edgegen's own (e.g. a truncated prompt); library deprecations stay quiet
                click.echo(f"edgegen: warning: {message}", err=True)

        warnings.showwarning = one_line
        # torchao (pulled in by executorch.runtime) logs about optional CUDA kernels and a deprecation at import
        for noisy in ("torchao", "torch.utils._pytree"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        try:
            return super().invoke(ctx)
        except EdgegenError as exc:
            click.echo(f"edgegen: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="edgegen")
def main():
    """edgegen: Stable Audio Open Small from checkpoint to phone (generate, export, run, parity, bench)."""


_model = click.option("--model", "-m", required=True,
                      help="Model folder in the official layout (model_config.json + model.safetensors), "
                           "or a built-in random model: random:tiny, random:sao-small.")
_t5 = click.option("--t5", type=click.Path(file_okay=False, path_type=Path), default=None,
                   help="T5 folder (config.json, model.safetensors or pytorch_model.bin, spiece.model). "
                        "Default: the Hugging Face cache (t5-base / google-t5/t5-base), offline.")


@main.command()
@_model
@_t5
@click.option("--prompt", "-p", required=True)
@click.option("--seconds", "-s", type=float, default=10.0, show_default=True, help="Duration (seconds_total).")
@click.option("--steps", type=click.IntRange(1, 1000), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--noise", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inject noise: float32 .npy of shape [steps, 64, T].")
@click.option("--cfg-scale", type=float, default=1.0, show_default=True)
@click.option("--pcm16", is_flag=True, help="Write 16-bit PCM instead of float32.")
@click.option("--stream", is_flag=True, help="Decode in overlapping windows and write each chunk as it is ready.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def generate(model, t5, prompt, seconds, steps, seed, noise, cfg_scale, pcm16, stream, output):
    """Generate audio with the PyTorch reference pipeline."""
    from edgegen.audio_io import read_noise
    from edgegen.pipeline import Timings, load_pipeline

    start = time.perf_counter()
    pipe = load_pipeline(model, t5=t5)
    load_s = time.perf_counter() - start
    pipe.check_seconds(seconds)
    injected = read_noise(noise, (steps, pipe.config.dit.io_channels, pipe.latent_length)) if noise else None
    timings = Timings()
    with _wav_out(output, pipe.sample_rate, pcm16=pcm16, stream=stream) as (on_chunk, finish):
        with click.progressbar(length=steps, label="sampling", file=sys.stderr) as bar:
            wav = pipe.generate(prompt, seconds_total=seconds, steps=steps, seed=seed, noise=injected,
                                cfg_scale=cfg_scale, on_step=lambda i, x: bar.update(1), timings=timings,
                                stream=stream, on_chunk=on_chunk)
        finish(wav)
    click.echo(f"wrote {output} ({wav.shape[1] / pipe.sample_rate:.2f} s, {wav.shape[0]} ch, {pipe.sample_rate} Hz)")
    click.echo(_stage_line({"load": load_s, **timings.stages}) + f"  (dit {timings.stages['dit'] / steps:.3f}s/step)")


def _stage_line(stages: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}s" for k, v in stages.items())


@contextlib.contextmanager
def _wav_out(path: Path, sample_rate: int, *, pcm16: bool, stream: bool):
    """(on_chunk, finish): streamed, chunks go to the file as they arrive and `finish` does nothing; otherwise
    `on_chunk` is None and `finish(wav)` writes the whole file atomically."""
    from edgegen.audio_io import StreamingWav, check_writable, write_wav

    check_writable(path)  # before the generation, not after it
    if not stream:
        yield None, lambda wav: write_wav(path, wav, sample_rate, pcm16=pcm16)
        return
    with StreamingWav(path, sample_rate, channels=2, pcm16=pcm16) as out:
        def on_chunk(chunk):
            out.write(chunk)
            click.echo(f"  chunk: {out.frames / sample_rate:6.2f} s of audio written", err=True)

        yield on_chunk, lambda wav: None


@main.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--model", "-m", default=None, help="Describe a model instead of a bundle.")
@_t5
def info(bundle, model, t5):
    """Describe a model (--model) or a bundle (BUNDLE: verifies every checksum)."""
    if (bundle is None) == (model is None):
        raise EdgegenError("give either a BUNDLE folder/zip or --model M")
    if model is not None:
        from edgegen.pipeline import load_pipeline

        click.echo(describe_model(load_pipeline(model, t5=t5)))
    else:
        from edgegen.bundle import describe_bundle

        click.echo(describe_bundle(bundle))


@main.command("export")
@_model
@_t5
@click.option("--target", "-t", required=True, help="Target profile: a name in export_targets/ or a .toml path.")
@click.option("--recipe", "-r", required=True, help="Quantization recipe: a name in quantize/ or a .toml path.")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Bundle folder to create.")
@click.option("--components", "-c", default="text_encoder,dit,decoder", show_default=True,
              help="Comma-separated subset of text_encoder,dit,decoder.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--zip", "make_zip", is_flag=True, help="Also write OUTPUT.zip for app bundling.")
@click.option("--decoder-window", default="auto", show_default=True,
              help="Latent frames per decoder call: auto (stream when the sequence is long; SAO-small: 60 of 256), "
                   "whole, or a number. A streamed decoder runs over overlapping windows: less memory, early audio.")
def export_cmd(model, t5, target, recipe, output, components, force, make_zip, decoder_window):
    """Quantize and export the three artifacts into a self-describing bundle."""
    from edgegen.bundle import COMPONENTS
    from edgegen.export import export_bundle, parse_decoder_window
    from edgegen.export.support import check_supported
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import load_recipe, load_target

    tgt, rec = load_target(target), load_recipe(recipe)
    check_supported(rec, tgt)  # before the (slow) model load
    parse_decoder_window(decoder_window)
    if Path(output).exists() and not force:
        raise EdgegenError(f"{output} already exists; pass --force to replace it")
    comps = tuple(c.strip() for c in components.split(",") if c.strip())
    if bad := [c for c in comps if c not in COMPONENTS]:
        raise EdgegenError(f"unknown component(s) {', '.join(bad)}; choose from {', '.join(COMPONENTS)}")
    click.echo(f"loading {model}", err=True)
    pipe = load_pipeline(model, t5=t5)
    start = time.perf_counter()
    progress = lambda comp, stage: click.echo(f"[{time.perf_counter() - start:7.1f}s] {comp:<13} {stage}", err=True)
    report = export_bundle(pipe, target=tgt, recipe=rec, out=output, components=comps, force=force,
                           make_zip=make_zip, decoder_window=decoder_window, progress=progress)
    click.echo(f"{'artifact':<14}{'file':<22}{'size MB':>10}{'time s':>9}{'XNNPACK':>9}  schemes")
    for c in report.components:
        frac = "-" if c.delegated_fraction is None else f"{c.delegated_fraction:.0%}"
        schemes = ", ".join(f"{k} x{v}" for k, v in c.schemes.items()) or "fp32"
        click.echo(f"{c.component:<14}{c.file:<22}{c.size / 1e6:>10.2f}{c.seconds:>9.1f}{frac:>9}  {schemes}")
    click.echo(f"wrote {output} in {report.seconds:.1f}s (peak RSS {report.peak_rss_mb:.0f} MB)")


_bundle = click.option("--bundle", "-b", required=True, type=click.Path(path_type=Path),
                       help="Bundle folder or .zip made by `edgegen export`.")
_threads = click.option("--threads", type=click.IntRange(1, 256), default=None,
                        help="Runtime threads (default: the bundle's target profile).")
_low_memory = click.option("--low-memory", is_flag=True,
                           help="Load each artifact only for its stage and drop it after: peak memory of the "
                                "largest stage instead of all three, loading timed inside every generation.")


@main.command()
@_bundle
@click.option("--prompt", "-p", required=True)
@click.option("--seconds", "-s", type=float, default=10.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--noise", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inject noise: float32 .npy of shape [steps, 64, T].")
@_threads
@_low_memory
@click.option("--pcm16", is_flag=True)
@click.option("--stream", is_flag=True, help="Write each decoded window to OUTPUT as soon as it is ready "
                                             "(bundles exported with a decoder window).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def run(bundle, prompt, seconds, seed, noise, threads, low_memory, pcm16, stream, output):
    """Generate audio by running a bundle's artifacts in its runtime."""
    from edgegen.audio_io import read_noise
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.pipeline import Timings

    bp = BundlePipeline.open(bundle, threads=threads, low_memory=low_memory)
    bp.check_seconds(seconds)
    if stream and bp.stream is None:
        raise EdgegenError(f"{bundle}: its decoder takes the whole sequence, so there is nothing to stream; "
                           "re-export with `edgegen export --decoder-window auto` (or a number of frames)")
    injected = read_noise(noise, (bp.steps, *bp.latent_shape)) if noise else None
    timings = Timings()
    with _wav_out(output, bp.sample_rate, pcm16=pcm16, stream=stream) as (on_chunk, finish):
        with click.progressbar(length=bp.steps, label="sampling", file=sys.stderr) as bar:
            wav = bp.generate(prompt, seconds_total=seconds, seed=seed, noise=injected,
                              on_step=lambda i, x: bar.update(1), timings=timings, on_chunk=on_chunk)
        finish(wav)
    click.echo(f"wrote {output} ({wav.shape[1] / bp.sample_rate:.2f} s) with {bp.backend_label}")
    click.echo(_stage_line({"load": bp.load_s, **timings.stages}))


@main.command()
@_bundle
@_model
@_t5
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON.")
@_threads
@click.option("--adb", "use_adb", is_flag=True, help="Run the bundle on an Android phone with the native runner.")
@click.option("--serial", default=None, help="adb device serial (with --adb; needed when several are connected).")
@click.option("--runner", "runner_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("build/runner-android-arm64"), show_default=True, help="android-arm64 runner folder (--adb).")
@click.option("--adb-path", default="adb", show_default=True, help="The adb executable (--adb).")
def parity(bundle, model, t5, seed, json_path, threads, use_adb, serial, runner_dir, adb_path):
    """Compare every artifact with the PyTorch component it came from. Exit 0 pass, 1 a gate failed, 2 bad input."""
    import json

    from edgegen.parity import check_parity, format_report
    from edgegen.pipeline import load_pipeline

    if use_adb:
        from edgegen.adb import device_parity, preflight
        from edgegen.bundle import open_bundle

        b = open_bundle(bundle)
        dev = preflight(adb_path=adb_path, serial=serial, bundle=b, runner_dir=runner_dir)
        click.echo(f"device {dev.serial} ({dev.abi})", err=True)
        report = device_parity(b, load_pipeline(model, t5=t5), device=dev, runner_dir=runner_dir, seed=seed,
                               threads=threads, on_stage=lambda s: click.echo(s, err=True))
    else:
        from edgegen.bundle_pipeline import BundlePipeline

        report = check_parity(BundlePipeline.open(bundle, threads=threads), load_pipeline(model, t5=t5), seed=seed)
    click.echo(format_report(report))
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if report["passed"] else 1)


@main.command()
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=None, help="Time a bundle.")
@click.option("--model", "-m", default=None, help="Time the eager PyTorch pipeline of a model instead.")
@_t5
@click.option("--iters", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 100), default=1, show_default=True)
@_threads
@click.option("--seconds", "-s", type=float, default=10.0, show_default=True, help="Audio length to generate.")
@_low_memory
@click.option("--adb", "use_adb", is_flag=True, help="Time the bundle on an Android phone with the native runner.")
@click.option("--serial", default=None, help="adb device serial (with --adb; needed when several are connected).")
@click.option("--runner", "runner_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("build/runner-android-arm64"), show_default=True, help="android-arm64 runner folder (--adb).")
@click.option("--adb-path", default="adb", show_default=True, help="The adb executable (--adb).")
def bench(bundle, model, t5, iters, warmup, threads, seconds, low_memory, use_adb, serial, runner_dir, adb_path):
    """Time load, text encoder, DiT, decoder and end to end; the last stdout line is one JSON object."""
    import json

    from edgegen.bench import bench_bundle, bench_model, format_bench

    if (bundle is None) == (model is None) or (use_adb and bundle is None):
        raise EdgegenError("--adb times a bundle on the phone: give --bundle B" if use_adb
                           else "give exactly one of --bundle B or --model M")
    if low_memory and (bundle is None or use_adb):
        raise EdgegenError("--low-memory applies to a bundle run on this machine (--bundle B, without --adb)")
    tick = lambda i: click.echo(f"iteration {i + 1}/{warmup + iters}", err=True)  # noqa: E731
    if use_adb:
        from edgegen.adb import device_bench, preflight
        from edgegen.bundle import open_bundle

        b = open_bundle(bundle)
        dev = preflight(adb_path=adb_path, serial=serial, bundle=b, runner_dir=runner_dir)
        result = device_bench(b, device=dev, runner_dir=runner_dir, iters=iters, warmup=warmup, threads=threads,
                              seconds=seconds, on_iter=tick)
    elif bundle is not None:
        result = bench_bundle(bundle, iters=iters, warmup=warmup, threads=threads, seconds=seconds,
                              low_memory=low_memory, on_iter=tick)
    else:
        result = bench_model(model, t5=t5, iters=iters, warmup=warmup, threads=threads, seconds=seconds, on_iter=tick)
    click.echo(format_bench(result))
    click.echo(json.dumps(result))


@main.command("build-runner")
@click.option("--target", "-t", required=True, type=click.Choice(["host", "linux-aarch64", "android-arm64"]))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder that will hold the edgegen-runner executable (and its libraries).")
@click.option("--android-ndk", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Android NDK root (android-arm64 only; default $ANDROID_NDK).")
@click.option("--executorch-android-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Install prefix of an ExecuTorch build for Android arm64-v8a (android-arm64 only).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True)
def build_runner_cmd(target, output, android_ndk, executorch_android_dir, jobs):
    """Build the native C++ runner (android_demo/runner) for the host, aarch64 Linux or Android."""
    import os

    from edgegen.runner_build import build_runner

    ndk = android_ndk or (Path(os.environ["ANDROID_NDK"]) if os.environ.get("ANDROID_NDK") else None)
    exe = build_runner(target=target, out_dir=output, android_ndk=ndk, executorch_android_dir=executorch_android_dir,
                       jobs=jobs, log=lambda line: click.echo(line, err=True))
    click.echo(f"built {exe}")


def describe_model(pipe) -> str:
    rows = [(name, sum(p.numel() for p in m.parameters())) for name, m in pipe.modules().items()]
    cfg = pipe.config
    lines = [f"source          {pipe.source.model}", f"t5              {pipe.source.t5}",
             f"objective       {cfg.diffusion_objective}",
             f"sample rate     {pipe.sample_rate} Hz, 2 channels",
             f"latent length   {pipe.latent_length} x {cfg.dit.io_channels} ({pipe.max_seconds:.2f} s max)",
             f"dit             {cfg.dit.depth} blocks x {cfg.dit.embed_dim} wide, {cfg.dit.num_heads} heads",
             "parameters:"]
    lines += [f"  {name:<14}{n:>14,}" for name, n in rows]
    lines.append(f"  {'total':<14}{sum(n for _, n in rows):>14,}")
    return "\n".join(lines)


def _register_train() -> None:
    from edgegen.train.commands import train

    main.add_command(train)


_register_train()

if __name__ == "__main__":
    main()
