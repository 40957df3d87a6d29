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
    """Bad input (EdgegenError, or click's own usage errors: a missing option, a value out of its range) becomes one
    `edgegen: error:` line on stderr and exit status 2; warnings become one line each. Anything else is a bug and
    keeps its traceback."""

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
        except click.UsageError as exc:  # raised while a subcommand parses its arguments
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"edgegen: error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="edgegen")
def main():
    """edgegen: Stable Audio Open Small from checkpoint to phone (generate, export, run, parity, bench)."""


_model = click.option("--model", "-m", required=True,
                      help="Model folder in the official layout (model_config.json + model.safetensors), "
                           "or a built-in random model: random:tiny, random:sao-small.")


def _hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read here (process state stays in the CLI) and passed to the library as --t5's
    default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"


_t5 = click.option("--t5", type=click.Path(file_okay=False, path_type=Path), default=_hf_hub_cache,
                   help="T5 folder (config.json, model.safetensors or pytorch_model.bin, spiece.model), or a Hugging "
                        "Face hub cache holding t5-base / google-t5/t5-base. Default: the hub cache ($HF_HUB_CACHE, "
                        "else $HF_HOME/hub, else ~/.cache/huggingface/hub), searched offline.")
_t5_precision = click.option("--t5-precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
                             help="T5 weights: fp16 rounds them through float16 as upstream stable-audio-tools loads "
                                  "them (what SAO-small was trained on; compute stays fp32); fp32 keeps them as stored.")
_truncate_prompt = click.option("--truncate-prompt", is_flag=True,
                                help="Cut a prompt longer than the model's max_length tokens to its first "
                                     "max_length - 1 (and EOS) instead of refusing it; says so on stderr and stdout.")


def _init_audio(f):
    """--init-audio FILE and --init-noise-level S (audio-to-audio)."""
    f = click.option("--init-noise-level", type=float, default=None,
                     help="With --init-audio: the noise level S sampling starts from, 0 < S <= 1 (default 0.5); "
                          "small S stays close to the recording, 1 is text-to-audio.")(f)
    return click.option("--init-audio", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Audio-to-audio: start from this recording (WAV, FLAC, OGG; resampled, made stereo, "
                             "cropped or padded to the model's length, each change noted on stderr).")(f)


def _read_init(path: Path | None, level: float | None) -> tuple[tuple[int, "np.ndarray"] | None, float]:
    """(sample_rate, audio) of --init-audio and the checked S; an error line for a bad file or S, or S alone."""
    from edgegen.init_audio import check_init_noise_level, read_init_audio

    if path is None:
        if level is not None:
            raise EdgegenError("--init-noise-level applies to audio-to-audio: give --init-audio FILE too")
        return None, 1.0
    level = check_init_noise_level(0.5 if level is None else level)
    return read_init_audio(path), level


def _prepare_init(init: tuple[int, np.ndarray] | None, *, sample_rate: int, length: int):
    """The init audio at the model's rate, channels and length, each change said on stderr as a note."""
    if init is None:
        return None
    from edgegen.init_audio import prepare_init_audio

    prepared, notes = prepare_init_audio(*init, sample_rate=sample_rate, length=length)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    return sample_rate, prepared[0].numpy()


@main.command()
@_model
@_t5
@_t5_precision
@click.option("--prompt", "-p", required=True)
@click.option("--seconds", "-s", type=float, default=10.0, show_default=True, help="Duration (seconds_total).")
@click.option("--steps", type=click.IntRange(1, 1000), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--noise", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inject noise: float32 .npy of shape [steps, 64, T].")
@click.option("--cfg-scale", type=float, default=1.0, show_default=True,
              help="Classifier-free guidance scale (a finite number; 1 = no guidance).")
@click.option("--pcm16", is_flag=True, help="Write 16-bit PCM instead of float32.")
@click.option("--stream", is_flag=True, help="Decode in overlapping windows and write each chunk as it is ready.")
@_truncate_prompt
@_init_audio
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def generate(model, t5, t5_precision, prompt, seconds, steps, seed, noise, cfg_scale, pcm16, stream, truncate_prompt,
             init_audio, init_noise_level, output):
    """Generate audio with the PyTorch reference pipeline (text-to-audio, or audio-to-audio with --init-audio)."""
    import math

    from edgegen.audio_io import check_output, read_noise
    from edgegen.common import Timings
    from edgegen.pipeline import load_pipeline

    if not math.isfinite(cfg_scale):
        raise EdgegenError(f"--cfg-scale {cfg_scale}: give a finite number (1 = no guidance)")
    check_output(output, inputs={"--noise": noise, "--model": model, "--t5": t5, "--init-audio": init_audio})
    init, level = _read_init(init_audio, init_noise_level)  # before the model loads
    start = time.perf_counter()
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    load_s = time.perf_counter() - start
    pipe.check_seconds(seconds)
    tokens = pipe.tokenizer.fit(prompt, truncate=truncate_prompt)
    injected = read_noise(noise, (steps, pipe.config.dit.io_channels, pipe.latent_length)) if noise else None
    init = _prepare_init(init, sample_rate=pipe.sample_rate, length=pipe.latent_length * pipe.config.vae.hop)
    timings = Timings()
    # SIGTERM unwinds too, so a stream's partial file is removed as on an error or Ctrl-C
    with _sigterm_unwinds(), _wav_out(output, pipe.sample_rate, pcm16=pcm16, stream=stream) as (on_chunk, finish):
        with click.progressbar(length=steps, label="sampling", file=sys.stderr) as bar:
            wav = pipe.generate(prompt, seconds_total=seconds, steps=steps, seed=seed, noise=injected,
                                cfg_scale=cfg_scale, on_step=lambda i, x: bar.update(1), timings=timings,
                                stream=stream, on_chunk=on_chunk, truncate_prompt=truncate_prompt,
                                init_audio=init, init_noise_level=level)
        finish(wav)
    click.echo(f"wrote {output} ({wav.shape[1] / pipe.sample_rate:.2f} s, {wav.shape[0]} ch, {pipe.sample_rate} Hz)"
               + _truncated(tokens, pipe.tokenizer.max_length))
    click.echo(_stage_line({"load": load_s, **timings.stages}) + f"  (dit {timings.stages['dit'] / steps:.3f}s/step)")


def _stage_line(stages: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}s" for k, v in stages.items())


def _truncated(tokens: int, max_length: int) -> str:
    """What the `wrote` line adds when --truncate-prompt cut the prompt (stderr has said so as a warning too)."""
    return f"; prompt truncated from {tokens} to {max_length} tokens" if tokens > max_length else ""


@contextlib.contextmanager
def _wav_out(path: Path, sample_rate: int, *, pcm16: bool, stream: bool):
    """(on_chunk, finish): streamed, chunks go to a partial file beside `path` as they arrive, renamed onto `path`
    when the block ends (removed if it raises) and `finish` does nothing; otherwise `on_chunk` is None and
    `finish(wav)` writes the whole file atomically. Commands call `check_output` before loading anything; this
    checks again just before writing."""
    from edgegen.audio_io import StreamingWav, check_writable, write_wav

    check_writable(path)
    if not stream:
        yield None, lambda wav: write_wav(path, wav, sample_rate, pcm16=pcm16)
        return
    with StreamingWav(path, sample_rate, channels=2, pcm16=pcm16) as out:
        click.echo(f"  streaming into {out.partial} (renamed to {path} when complete)", err=True)

        def on_chunk(chunk):
            out.write(chunk)
            click.echo(f"  chunk: {out.frames / sample_rate:6.2f} s of audio written", err=True)

        yield on_chunk, lambda wav: None


@main.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--model", "-m", default=None, help="Describe a model instead of a bundle.")
@_t5
@_t5_precision
def info(bundle, model, t5, t5_precision):
    """Describe a model (--model) or a bundle (BUNDLE: verifies every checksum)."""
    if (bundle is None) == (model is None):
        raise EdgegenError("give either a BUNDLE folder/zip or --model M")
    if model is not None:
        from edgegen.pipeline import load_pipeline

        click.echo(describe_model(load_pipeline(model, t5=t5, t5_precision=t5_precision)))
    else:
        from edgegen.bundle import describe_bundle

        click.echo(describe_bundle(bundle))


@main.command("export")
@_model
@_t5
@_t5_precision
@click.option("--target", "-t", required=True, help="Target profile: a name in export_targets/ or a .toml path.")
@click.option("--recipe", "-r", required=True, help="Quantization recipe: a name in quantize/ or a .toml path.")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Bundle folder to create.")
@click.option("--components", "-c", default="text_encoder,dit,decoder", show_default=True,
              help="Comma-separated subset of text_encoder,dit,decoder,encoder.")
@click.option("--audio-to-audio", is_flag=True,
              help="Also export the VAE encoder (a fourth artifact), so the bundle can start from init audio "
                   "(`run --init-audio`). The recipe's [components.encoder] applies; fp32 when it has none.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--zip", "make_zip", is_flag=True, help="Also write OUTPUT.zip for app bundling.")
@click.option("--decoder-window", default="auto", show_default=True,
              help="Latent frames per decoder call: auto (stream when the sequence is longer than the default "
                   "window), whole, or a number. A streamed decoder uses less memory and plays audio early.")
@click.option("--decoder-stream", type=click.Choice(["stateful", "overlap"]), default="stateful", show_default=True,
              help="How a streamed decoder runs: stateful (windows back to back, each latent frame decoded once; "
                   "bundle schema 3) or overlap (overlapping windows of the plain decoder, ~1.4x the frames; schema 2, "
                   "for tools that read only schema 1-2).")
@click.option("--verbose", is_flag=True, help="Show the converters' own output (by default it goes to a log file, "
                                              "shown only when a conversion fails).")
@click.option("--no-verify", is_flag=True,
              help="Publish without running each artifact against its reference component (by default a component "
                   "below its recipe's floor is refused: exit 1, nothing written). The manifest records the skip.")
@click.option("--sensitivity-floor", type=click.FloatRange(0, 200, min_open=True), default=None,
              help="Choose the decoder's float layers for THIS checkpoint: measure each layer's int8 sensitivity "
                   "(`edgegen sensitivity`) and keep the fewest float that meet this SQNR (dB), which becomes the "
                   "decoder's floor. Applies when the recipe quantizes the decoder (e.g. --recipe fast).")
def export_cmd(model, t5, t5_precision, target, recipe, output, components, audio_to_audio, force, make_zip,
               decoder_window, decoder_stream, verbose, no_verify, sensitivity_floor):
    """Quantize and export the three artifacts (four with --audio-to-audio) into a self-describing bundle."""
    from edgegen.common import ARTIFACTS, ENCODER
    from edgegen.export import ConversionError, export_bundle, parse_decoder_window
    from edgegen.export.staging import check_bundle_output
    from edgegen.export.support import check_supported
    from edgegen.export.verify import VerificationError
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import load_recipe, load_target

    tgt, rec = load_target(target), load_recipe(recipe)
    comps = tuple(c.strip() for c in components.split(",") if c.strip()) + ((ENCODER,) if audio_to_audio else ())
    if bad := [c for c in comps if c not in ARTIFACTS]:
        raise EdgegenError(f"unknown component(s) {', '.join(bad)}; choose from {', '.join(ARTIFACTS)}")
    check_supported(rec, tgt, comps)  # before the (slow) model load
    parse_decoder_window(decoder_window)
    check_bundle_output(output, force=force, make_zip=make_zip)  # --force replaces only a bundle edgegen made
    if sensitivity_floor is not None and ("decoder" not in comps or
                                          not any(r.scheme == "int8" for r in rec.resolved_rules("decoder", tgt))):
        raise EdgegenError(f"--sensitivity-floor chooses the decoder's float layers, but recipe {rec.name!r} does "
                           "not quantize the decoder to int8 here; use e.g. --recipe fast")
    click.echo(f"loading {model}", err=True)
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    if ENCODER not in comps:
        pipe.release(ENCODER)  # neither exported nor verified: its weights would only add to the export's peak
    start = time.perf_counter()
    progress = lambda comp, stage: click.echo(f"[{time.perf_counter() - start:7.1f}s] {comp:<13} {stage}", err=True)
    if sensitivity_floor is not None:
        from edgegen.sensitivity import tuned_recipe

        rec, _ = tuned_recipe(rec, pipe, floor_db=sensitivity_floor, backend=tgt.backend,
                              progress=lambda line: progress("decoder", f"sensitivity: {line.split(': ', 1)[-1]}"))
        floats = [r.pattern for r in rec.components["decoder"].rules if r.scheme == "fp32"]
        click.echo(f"sensitivity: decoder keeps {len(floats)} layer(s) float for {sensitivity_floor:g} dB: "
                   f"{', '.join(floats) or 'none'}", err=True)
    with _sigterm_unwinds() as check_sigterm:
        try:
            report = export_bundle(pipe, target=tgt, recipe=rec, out=output, components=comps, force=force,
                                   make_zip=make_zip, decoder_window=decoder_window,
                                   decoder_stream=decoder_stream, verbose=verbose, verify=not no_verify,
                                   progress=lambda comp, stage: (check_sigterm(), progress(comp, stage)))
        except ConversionError as exc:
            for line in [] if verbose else exc.log_tail:
                click.echo(f"  | {line}", err=True)
            raise
        except VerificationError as exc:  # a gate failed (exit 1, as parity's), not bad input (exit 2)
            click.echo(exc.table)
            click.echo(f"edgegen: error: {exc}", err=True)
            sys.exit(1)
    click.echo(f"{'artifact':<14}{'file':<22}{'size MB':>10}{'time s':>9}{'XNNPACK':>9}  schemes")
    for c in report.components:
        frac = "-" if c.delegated_fraction is None else f"{c.delegated_fraction:.0%}"
        schemes = ", ".join(f"{k} x{v}" for k, v in c.schemes.items()) or "fp32"
        click.echo(f"{c.component:<14}{c.file:<22}{c.size / 1e6:>10.2f}{c.seconds:>9.1f}{frac:>9}  {schemes}")
    v = report.verification
    if v["verified"]:
        figures = ", ".join(f"{c} {e['sqnr_db'] if isinstance(e['sqnr_db'], str) else round(e['sqnr_db'], 1)} dB"
                            for c, e in v["components"].items())
        click.echo(f"verified against {v['reference']} in {v['seconds_taken']:.1f}s: {figures} (all gates pass)")
    else:
        click.echo("not verified (--no-verify): run `edgegen parity` on the bundle before shipping it")
    click.echo(f"wrote {output} in {report.seconds:.1f}s (peak RSS {report.peak_rss_mb:.0f} MB)")


@contextlib.contextmanager
def _sigterm_unwinds():
    """SIGTERM raises SystemExit(143) while the block runs, so cleanup (a staging folder) runs as on Ctrl-C.

    Python drops an exception raised while a garbage-collection callback runs (jax registers one), so the block
    also gets `check()`: it raises again once SIGTERM has arrived (call it between stages), and leaving the block
    calls it too."""
    import signal

    received: list[int] = []

    def check():
        if received:
            raise SystemExit(128 + received[0])

    def terminated(signum, frame):
        received.append(signum)
        check()

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = terminated
    try:
        yield check
        check()
    finally:
        if previous is not terminated:
            signal.signal(signal.SIGTERM, previous)


_bundle = click.option("--bundle", "-b", required=True, type=click.Path(path_type=Path),
                       help="Bundle folder or .zip made by `edgegen export`.")
_threads = click.option("--threads", type=click.IntRange(1, 256), default=None,
                        help="Runtime threads (default: the bundle's target profile).")
def _weight_cache(f):
    """--weight-cache DIR / --no-weight-cache (LiteRT bundles run on this machine)."""
    f = click.option("--no-weight-cache", is_flag=True,
                     help="LiteRT: pack the weights in memory on every load (no cache files).")(f)
    return click.option("--weight-cache", type=click.Path(path_type=Path), default=None,
                        help="LiteRT: XNNPACK weight cache folder, created if missing; the first run packs each "
                             "artifact's weights into a file there, later runs map it instead of reading the model's "
                             "weights (default: $EDGEGEN_WEIGHT_CACHE, else $XDG_CACHE_HOME/edgegen/xnnpack, else "
                             "~/.cache/edgegen/xnnpack, as the native runner).")(f)


def _resolve_weight_cache(folder, off: bool):
    from edgegen.weight_cache import WeightCache

    if folder is not None and off:
        raise EdgegenError("give --weight-cache DIR or --no-weight-cache, not both")
    return WeightCache.resolve(folder, enabled=not off)


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
@_weight_cache
@click.option("--pcm16", is_flag=True)
@click.option("--stream", is_flag=True, help="Write each decoded window to OUTPUT as soon as it is ready "
                                             "(bundles exported with a decoder window).")
@_truncate_prompt
@_init_audio
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def run(bundle, prompt, seconds, seed, noise, threads, low_memory, weight_cache, no_weight_cache, pcm16, stream,
        truncate_prompt, init_audio, init_noise_level, output):
    """Generate audio by running a bundle's artifacts in its runtime (audio-to-audio with --init-audio: needs a
    bundle exported with --audio-to-audio)."""
    from edgegen.audio_io import check_output, read_noise
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.common import Timings

    check_output(output, inputs={"--bundle": bundle, "--noise": noise, "--init-audio": init_audio})
    init, level = _read_init(init_audio, init_noise_level)  # before the bundle loads
    cache = _resolve_weight_cache(weight_cache, no_weight_cache)
    # with_resource: the command's end (success or error) removes a .zip bundle's unpacked copy
    bp = click.get_current_context().with_resource(BundlePipeline.open(bundle, threads=threads, low_memory=low_memory,
                                                                       audio_to_audio=init is not None,
                                                                       weight_cache=cache))
    bp.check_seconds(seconds)
    tokens = bp.tokenizer.fit(prompt, truncate=truncate_prompt)
    if stream and bp.stream is None:
        raise EdgegenError(f"{bundle}: {bp.stream_refusal()}")
    injected = read_noise(noise, (bp.steps, *bp.latent_shape)) if noise else None
    if init is not None:
        from edgegen.bundle import init_audio_shape

        init = _prepare_init(init, sample_rate=bp.sample_rate, length=init_audio_shape(bp.bundle.manifest, bundle)[-1])
    timings = Timings()
    with _sigterm_unwinds(), _wav_out(output, bp.sample_rate, pcm16=pcm16, stream=stream) as (on_chunk, finish):
        with click.progressbar(length=bp.steps, label="sampling", file=sys.stderr) as bar:
            wav = bp.generate(prompt, seconds_total=seconds, seed=seed, noise=injected,
                              on_step=lambda i, x: bar.update(1), timings=timings, on_chunk=on_chunk,
                              truncate_prompt=truncate_prompt, init_audio=init, init_noise_level=level)
        finish(wav)
    click.echo(f"wrote {output} ({wav.shape[1] / bp.sample_rate:.2f} s) with {bp.backend_label}"
               + _truncated(tokens, bp.tokenizer.max_length))
    click.echo(_stage_line({"load": bp.load_s, **timings.stages}))


def _adb_options(verb: str):
    """--adb, --serial, --runner, --adb-path: `verb` ("run", "time") the bundle on a phone with the native runner."""
    options = [
        click.option("--adb", "use_adb", is_flag=True,
                     help=f"{verb.capitalize()} the bundle on an Android phone with the native runner."),
        click.option("--serial", default=None, help="adb device serial (with --adb; needed when several are connected)."),
        click.option("--runner", "runner_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("build/runner-android-arm64-portable"), show_default=True,
                     help="Runner folder for the phone (--adb): `edgegen build-runner --target "
                          "android-arm64-portable` (no NDK needed), or an android-arm64 NDK build."),
        click.option("--adb-path", default="adb", show_default=True, help="The adb executable (--adb)."),
    ]

    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f

    return apply


@main.command()
@_bundle
@_model
@_t5
@_t5_precision
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON (checked before any work, written atomically).")
@_threads
@_adb_options("run")
def parity(bundle, model, t5, t5_precision, seed, json_path, threads, use_adb, serial, runner_dir, adb_path):
    """Compare every artifact with the PyTorch component it came from. Exit 0 pass, 1 a gate failed, 2 bad input."""
    from edgegen.parity import check_parity, check_report_path, format_report, write_report
    from edgegen.pipeline import load_pipeline

    if json_path:
        check_report_path(json_path, inputs={"--bundle": bundle, "--model": model, "--t5": t5})
    if use_adb:
        from edgegen.adb import device_parity, preflight
        from edgegen.bundle import open_bundle

        b = click.get_current_context().with_resource(open_bundle(bundle))
        dev = preflight(adb_path=adb_path, serial=serial, bundle=b, runner_dir=runner_dir)
        click.echo(f"device {dev.serial} ({dev.abi})", err=True)
        report = device_parity(b, load_pipeline(model, t5=t5, t5_precision=t5_precision), device=dev, runner_dir=runner_dir, seed=seed,
                               threads=threads, on_stage=lambda s: click.echo(s, err=True))
    else:  # a path: check_parity compares the bundle's source with the model's before loading its artifacts
        report = check_parity(bundle, load_pipeline(model, t5=t5, t5_precision=t5_precision), seed=seed,
                              threads=threads)
    click.echo(format_report(report))
    if json_path:
        write_report(json_path, report)
    sys.exit(0 if report.passed else 1)


@main.command()
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=None, help="Time a bundle.")
@click.option("--model", "-m", default=None, help="Time the eager PyTorch pipeline of a model instead.")
@_t5
@_t5_precision
@click.option("--iters", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 100), default=1, show_default=True)
@_threads
@click.option("--seconds", "-s", type=float, default=None,
              help="Audio length to generate (default: the bundle's or model's maximum; beyond it is refused).")
@_low_memory
@_weight_cache
@_init_audio
@_adb_options("time")
def bench(bundle, model, t5, t5_precision, iters, warmup, threads, seconds, low_memory, weight_cache, no_weight_cache,
          init_audio, init_noise_level, use_adb, serial, runner_dir, adb_path):
    """Time load, (encoder,) text encoder, DiT, decoder and end to end; the last stdout line is one JSON object."""
    import json

    from edgegen.bench import bench_bundle, bench_model, format_bench

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
    init, level = _read_init(init_audio, init_noise_level)
    tick = lambda i: click.echo(f"iteration {i + 1}/{warmup + iters}", err=True)  # noqa: E731
    if use_adb:
        from edgegen.adb import device_bench, preflight
        from edgegen.bundle import open_bundle

        b = click.get_current_context().with_resource(open_bundle(bundle))
        dev = preflight(adb_path=adb_path, serial=serial, bundle=b, runner_dir=runner_dir)
        result = device_bench(b, device=dev, runner_dir=runner_dir, iters=iters, warmup=warmup, threads=threads,
                              seconds=seconds, init_audio=init, init_noise_level=level, on_iter=tick)
    elif bundle is not None:
        result = bench_bundle(bundle, iters=iters, warmup=warmup, threads=threads, seconds=seconds,
                              low_memory=low_memory, init_audio=init, init_noise_level=level,
                              weight_cache=_resolve_weight_cache(weight_cache, no_weight_cache), on_iter=tick)
    else:
        if threads:  # process state belongs to the command, not the library
            import torch

            torch.set_num_threads(threads)
        result = bench_model(model, t5=t5, t5_precision=t5_precision, iters=iters, warmup=warmup, seconds=seconds,
                             on_iter=tick)
    click.echo(format_bench(result))
    click.echo(json.dumps(result))


@main.command()
@_model
@_t5
@_t5_precision
@click.option("--component", "-c", required=True, type=click.Choice(["decoder", "dit", "text_encoder"]),
              help="The component to measure.")
@click.option("--scheme", default="int8", show_default=True, type=click.Choice(["int8", "int8w"]),
              help="Quantization simulated one layer at a time: int8 = per-channel int8 weights + dynamic int8 "
                   "activations; int8w = the same weights, fp32 activations (the `size` recipe's weight-only scheme).")
@click.option("--prompts", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Captions the reference samples representative inputs from.")
@click.option("--seconds", type=float, default=None, help="Audio length the inputs are sampled at (default 10 s, "
                                                          "or the model's maximum if shorter).")
@click.option("--frames", type=click.IntRange(4, 4096), default=32, show_default=True,
              help="Decoder: latent frames per representative window.")
@click.option("--backend", default="litert", show_default=True, type=click.Choice(["litert", "executorch"]),
              help="Whose int8 kernels to simulate. Both quantize a decoder convolution's input with one scale; "
                   "they differ on the ConvTransposes: a GEMM with one scale per time step on LiteRT, a "
                   "(polyphase) convolution with one scale on ExecuTorch.")
@click.option("--floor", "floor_db", type=click.FloatRange(0, 200, min_open=True), default=None,
              help="Also choose the fewest layers to keep in float so the component meets this SQNR (dB).")
@click.option("--write-recipe", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --floor: write the mixed recipe (.toml) that keeps those layers float.")
@click.option("--recipe", "-r", default="fast", show_default=True,
              help="With --write-recipe: the recipe the other components' rules come from.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every layer's figures as JSON.")
def sensitivity(model, t5, t5_precision, component, scheme, prompts, seconds, frames, backend, floor_db,
                write_recipe, recipe, json_path):
    """Quantize one layer at a time on representative inputs; report each layer's SQNR cost and time share, and
    (--floor, --write-recipe) the mixed recipe that keeps the fewest layers float while meeting the floor."""
    import json

    from edgegen.common import write_text_atomic
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import load_recipe
    from edgegen import sensitivity as sens

    if write_recipe is not None and floor_db is None:
        raise EdgegenError("--write-recipe needs --floor DB (the SQNR the written recipe must keep)")
    base = load_recipe(recipe) if write_recipe is not None else None  # a bad name fails before minutes of work
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    progress = lambda line: click.echo(line, err=True)  # noqa: E731
    kw = dict(prompts=prompts, seconds=seconds, frames=frames)
    result = sens.measure(pipe, component, scheme=scheme, backend=backend, progress=progress, **kw)
    if floor_db is not None:
        sens.choose_float_layers(result, pipe, floor_db=floor_db, progress=progress)
    click.echo(sens.format_table(result))
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result.to_json(), indent=2) + "\n")
        click.echo(f"wrote {json_path}")
    if write_recipe is not None:
        text = sens.recipe_toml(base, component, result, name=write_recipe.stem)
        write_text_atomic(write_recipe, text)
        load_recipe(write_recipe)  # what was written reads back under the recipe schema
        click.echo(f"wrote {write_recipe}")


@main.command("build-runner")
@click.option("--target", "-t", required=True,
              type=click.Choice(["host", "linux-aarch64", "android-arm64-portable", "android-arm64"]),
              help="host: this machine; linux-aarch64: arm64 Linux with glibc; android-arm64-portable: a folder that "
                   "runs on any arm64 Android or Linux, glibc's loader included (no NDK); android-arm64: an NDK build.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder that will hold the edgegen-runner executable (and its libraries).")
@click.option("--android-ndk", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Android NDK root (android-arm64 only; default $ANDROID_NDK).")
@click.option("--executorch-android-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Install prefix of an ExecuTorch build for Android arm64-v8a (android-arm64 only).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True)
def build_runner_cmd(target, output, android_ndk, executorch_android_dir, jobs):
    """Build the native C++ runner (android_demo/runner; ExecuTorch and LiteRT bundles) for the host, aarch64 Linux
    or Android."""
    import os

    from edgegen.runner_build import build_runner

    ndk = android_ndk or (Path(os.environ["ANDROID_NDK"]) if os.environ.get("ANDROID_NDK") else None)
    exe = build_runner(target=target, out_dir=output, android_ndk=ndk, executorch_android_dir=executorch_android_dir,
                       jobs=jobs, log=lambda line: click.echo(line, err=True))
    click.echo(f"built {exe}")


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


# --- edgegen train: base models (rectified flow) and ARC post-training; the logic lives in edgegen.train ---------

class _Number(click.ParamType):
    """A finite number (an int when `integer`) within bounds; click's FloatRange lets nan and inf through. A bad
    value is one `edgegen: error:` line naming the option, the value as typed and what is allowed."""

    def __init__(self, lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False):
        self.bounds = dict(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, integer=integer)
        self.name = "integer" if integer else "float"

    def convert(self, value, param, ctx):
        from edgegen.train.checks import check_number

        try:
            number = (int if self.bounds["integer"] else float)(value)
        except (TypeError, ValueError):
            number = None
        check_number(param.opts[0], number, shown=str(value), **self.bounds)
        return number


class _DitShape(click.ParamType):
    name = "WIDTH,DEPTH,HEADS"

    def convert(self, value, param, ctx):
        from edgegen.train.checks import DIT_CLI_NAMES, DIT_FIELDS, check_dit

        parts = str(value).split(",")
        if len(parts) != 3 or not all(p.strip().lstrip("-").isdigit() for p in parts):
            raise EdgegenError(f"--dit {value}: expected three integers WIDTH,DEPTH,HEADS, e.g. 128,4,2")
        dit = dict(zip(DIT_FIELDS, (int(p) for p in parts)))
        check_dit(dit, names=DIT_CLI_NAMES, shown=f"--dit {value}")
        return dit


class _StepCounts(click.ParamType):
    """Comma-separated ping-pong step counts, each an integer >= 2 ("" = none)."""
    name = "N[,N...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not all(p.isdigit() and int(p) >= 2 for p in parts):
            raise EdgegenError(f"{param.opts[0]} {value}: expected step counts >= 2 separated by commas, e.g. 4,8")
        return tuple(int(p) for p in parts)


class _Ints(click.ParamType):
    """Comma-separated positive integers, e.g. 2,4,4,8,8."""
    name = "N,N..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        if not all(p.isdigit() and int(p) >= 1 for p in parts):
            raise EdgegenError(f"{param.opts[0]} {value}: expected integers >= 1 separated by commas, e.g. 2,4,4,8,8")
        return tuple(int(p) for p in parts)


def _options(*options):
    """Several click options as one decorator (listed in this order by --help)."""
    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f
    return apply


_COUNT, _SEED = _Number(1, integer=True), _Number(0, 2**63 - 1, integer=True)  # torch.manual_seed's range
_train_run = _options(
    _model, _t5,
    click.option("--cache", required=True, type=click.Path(path_type=Path), help="From `edgegen train cache`."),
    click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
                 help="Run folder: state.safetensors, log.jsonl, model/ (official layout), t5/ for random:* models."),
    click.option("--steps", type=_COUNT, required=True, help="Total steps (also when resuming)."),
    click.option("--batch-size", type=_COUNT, default=32, show_default=True, help="Per process."),
    click.option("--ema-beta", type=_Number(0, 1, hi_open=True), default=0.9999, show_default=True,
                 help="EMA decay of the weights written to model/, in [0, 1)."))
_train_tail = _options(
    click.option("--seed", type=_SEED, default=0, show_default=True),
    click.option("--resume", is_flag=True, help="Continue the run saved in --out (an error when there is none)."),
    click.option("--save-every", type=_COUNT, default=500, show_default=True, help="Steps between saved states."))


def _log_record(record: dict) -> None:
    click.echo("  ".join(f"{k} {v}" for k, v in record.items()), err=True)


def _distributed() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun


@main.group()
def train():
    """Train a model's VAE and base DiT (rectified flow), and post-train it with ARC for few-step sampling.

    \b
    edgegen train synth --model random:tiny --out data --count 400
    edgegen train vae --model random:tiny --captions data/captions.jsonl --out runs/vae --steps 2000
    edgegen train cache --model random:tiny --captions data/captions.jsonl --out runs/cache.safetensors
    edgegen train rf  --model random:tiny --cache runs/cache.safetensors --out runs/base --steps 600 --lr 1e-3
    edgegen train arc --model runs/base/model --t5 runs/base/t5 --cache runs/cache.safetensors \\
                      --out runs/arc --steps 300 --disc-warmup-steps 100 --head-channels 32

    (then `train cache` / `rf` with --model runs/vae/model --t5 runs/vae/t5 train on the new VAE's latents)
    Under `torchrun --nproc_per_node N -m edgegen.cli train vae|rf|arc ...` they train with DistributedDataParallel
    (nccl on GPUs, else gloo). --resume continues a run from its last saved state up to --steps in total.
    """


@train.command("synth")
@_model
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder for the clips and captions.")
@click.option("--count", type=_COUNT, default=400, show_default=True)
@click.option("--seed", type=_SEED, default=0, show_default=True)
def train_synth_cmd(model, out, count, seed):
    """Write a synthetic captioned corpus (tones, chords, noise, rhythms, sweeps) at MODEL's rate and length."""
    from edgegen.pipeline import load_pipeline
    from edgegen.train.data import write_synthetic

    if not str(model).startswith("random:"):
        raise EdgegenError(f"--model {model}: synth takes a built-in model (e.g. random:tiny) for its sample rate "
                           "and length")
    pipe = load_pipeline(model)
    path = write_synthetic(out, count=count, sample_rate=pipe.sample_rate, seconds=pipe.max_seconds, seed=seed)
    click.echo(f"wrote {count} clips and {path}")


@train.command("cache")
@_model
@_t5
@click.option("--captions", required=True, type=click.Path(path_type=Path),
              help="CSV or JSONL with path, caption[, seconds][, label] (paths relative to this file).")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Cache file to write (safetensors).")
def train_cache_cmd(model, t5, captions, out):
    """Encode a captioned audio folder once: VAE latents + frozen T5 conditioning."""
    from edgegen.audio_io import check_output
    from edgegen.pipeline import load_pipeline
    from edgegen.train.data import build_cache, read_captions

    if out.parent.is_dir() and not out.is_dir():  # a missing folder build_cache makes (and removes on failure);
        check_output(out, inputs={"--captions": captions, "--model": model, "--t5": t5})  # a folder it names
    records = read_captions(captions)  # a bad captions file fails before the model loads
    click.echo(build_cache(pipe=load_pipeline(model, t5=t5), records=records, root=captions.parent, out=out).summary())


@train.command("rf")
@_train_run
@click.option("--lr", type=_Number(0, lo_open=True), default=2e-4, show_default=True, help="Learning rate (> 0).")
@click.option("--dit", "dit_shape", type=_DitShape(), default=None,
              help="Start from a fresh random DiT of this shape (e.g. 128,4,2) instead of MODEL's.")
@_train_tail
def train_rf_cmd(model, t5, cache, out, steps, batch_size, ema_beta, lr, dit_shape, seed, resume, save_every):
    """Train a base model with the rectified-flow objective."""
    from edgegen.train.rf import RFConfig, train_rf

    cfg = RFConfig(lr=lr, ema_beta=ema_beta, batch_size=batch_size, seed=seed)
    path = train_rf(model=model, t5=t5, cache=cache, out=out, cfg=cfg, steps=steps, dit=dit_shape, resume=resume,
                    distributed=_distributed(), save_every=save_every, log=_log_record)
    click.echo(f"base model: {path}")


@train.command("arc")
@_train_run
@click.option("--lr", type=_Number(0, lo_open=True), default=1e-5, show_default=True, help="G's learning rate.")
@click.option("--lr-discriminator", type=_Number(0, lo_open=True), default=1e-4, show_default=True,
              help="D's learning rate (10x G's lets the critic lead).")
@click.option("--disc-warmup-steps", type=_Number(0, integer=True), default=200, show_default=True,
              help="D-only steps before G and D alternate (counted in --steps).")
@click.option("--contrastive-weight", type=_Number(0), default=1.0, show_default=True, help="0 disables L_C.")
@click.option("--no-grad-penalty", is_flag=True, help="Drop the approximate R1/R2 penalty.")
@click.option("--hidden-layer", type=_Number(0, integer=True), default=None,
              help="D exits after this DiT block (default 0.75 x depth).")
@click.option("--head-channels", type=_COUNT, default=128, show_default=True,
              help="Width of D's ConvNeXt head (128 for SAO-small; 32 suits random:tiny-sized DiTs).")
@click.option("--chain-steps", type=_StepCounts(), default="", show_default=False,
              help="Also train G on its own ping-pong chains of these step counts, e.g. 4,8 (self-forcing; holds "
                   "the 8-step result steady in longer runs). Default: none, upstream ARC.")
@click.option("--chain-fraction", type=_Number(0, 1), default=0.5, show_default=True,
              help="Share of steps whose fake comes out of such a chain (with --chain-steps).")
@_train_tail
def train_arc_cmd(model, t5, cache, out, steps, batch_size, ema_beta, lr, lr_discriminator, disc_warmup_steps,
                  contrastive_weight, no_grad_penalty, hidden_layer, head_channels, chain_steps, chain_fraction, seed,
                  resume, save_every):
    """Post-train a base model with ARC (adversarial relativistic-contrastive) for few-step sampling."""
    from edgegen.train.arc import ARCConfig, train_arc

    cfg = ARCConfig(lr_generator=lr, lr_discriminator=lr_discriminator, disc_warmup_steps=disc_warmup_steps,
                    ema_beta=ema_beta, contrastive=contrastive_weight > 0,
                    weight_contrastive=contrastive_weight, grad_penalty=not no_grad_penalty,
                    dit_hidden_layer=hidden_layer, head_channels=head_channels, batch_size=batch_size, seed=seed,
                    chain_steps=chain_steps, chain_fraction=chain_fraction)
    path = train_arc(model=model, t5=t5, cache=cache, out=out, cfg=cfg, steps=steps, resume=resume,
                     distributed=_distributed(), save_every=save_every, log=_log_record)
    click.echo(f"ARC model: {path} (sample with 8 ping-pong steps)")


@train.command("vae")
@_model
@_t5
@click.option("--captions", required=True, type=click.Path(path_type=Path),
              help="CSV or JSONL with path, caption (paths relative to this file): the clips to train on.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Run folder: state.safetensors, log.jsonl, model/ (MODEL with this VAE), t5/ for random:* models.")
@click.option("--steps", type=_COUNT, required=True, help="Total steps (also when resuming).")
@click.option("--batch-size", type=_COUNT, default=4, show_default=True, help="Crops per step, per process.")
@click.option("--crop", type=_COUNT, default=32768, show_default=True, help="Samples per crop (a multiple of 2048).")
@click.option("--channels", type=_COUNT, default=16, show_default=True, help="VAE width (SAO-small: 128).")
@click.option("--strides", type=_Ints(), default="2,4,4,8,8", show_default=True,
              help="Encoder strides (product 2048); the decoder mirrors them.")
@click.option("--lr", type=_Number(0, lo_open=True), default=1.5e-4, show_default=True, help="Learning rate (> 0).")
@_train_tail
def train_vae_cmd(model, t5, captions, out, steps, batch_size, crop, channels, strides, lr, seed, resume, save_every):
    """Train an Oobleck VAE of the SAO family (64-channel latents, 2048x downsampling) on audio clips."""
    from edgegen.train.vae import VAEConfig, train_vae

    cfg = VAEConfig(channels=channels, strides=strides, crop=crop, batch_size=batch_size, lr=lr, seed=seed)
    path = train_vae(model=model, t5=t5, captions=captions, out=out, cfg=cfg, steps=steps, resume=resume,
                     distributed=_distributed(), save_every=save_every, log=_log_record)
    click.echo(f"model with the trained VAE: {path}")


if __name__ == "__main__":
    main()
