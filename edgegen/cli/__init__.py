"""The `edgegen` command: a thin shell over the library. Each command turns its options into keyword arguments,
calls one library function and prints what comes back; the work and its checks live in the library, where tests
reach them without click.

    __init__.py   the group (bad input: one `edgegen: error:` line, exit 2) and the options several commands share
    generate.py   generate, run                     -> edgegen.generate
    export.py     export, sensitivity, build-runner -> edgegen.export.run, edgegen.sensitivity, edgegen.runner_build
    check.py      info, parity, bench               -> edgegen.reports
    train.py      train synth | cache | rf | arc    -> edgegen.train
    corpus.py     corpus render | verify            -> edgegen.corpus
    judge.py      judge train | eval                -> edgegen.judge

`edgegen` (the console script) is `main`; `python -m edgegen.cli` runs it too (torchrun uses that).
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import click

from edgegen.common import DEFAULT_SECONDS, builtin_names
from edgegen.errors import EdgegenError, GateFailed


class _Group(click.Group):
    """Bad input (EdgegenError, or click's own usage errors: a missing option, a value out of its range) becomes one
    `edgegen: error:` line on stderr and exit status 2; a failed gate (GateFailed) prints its table, its line and
    exits 1; warnings become one line each. Anything else is a bug and keeps its traceback."""

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
        except GateFailed as exc:  # a check that ran and failed (exit 1, as parity's), not bad input (exit 2)
            click.echo(exc.table)
            click.echo(f"edgegen: error: {exc}", err=True)
            sys.exit(1)
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


def err(line: str) -> None:
    """One line on stderr: progress, notes, what a command is doing."""
    click.echo(line, err=True)


def sampling_bar(steps: int):
    """The progress bar of a generation's `steps` (stderr)."""
    return click.progressbar(length=steps, label="sampling", file=sys.stderr)


def options(*opts):
    """Several click options as one decorator (listed in this order by --help)."""
    def apply(f):
        for option in reversed(opts):
            f = option(f)
        return f
    return apply


def _hf_hub_cache() -> Path:
    from edgegen.common import hf_hub_cache  # imported when a command runs: `edgegen --help` stays light

    return hf_hub_cache()


def _names(folder: str) -> str:
    from edgegen.recipes import ROOT

    return ", ".join(sorted(p.stem for p in (ROOT / folder).glob("*.toml")))


MODEL_HELP = ("Model folder in the official layout (model_config.json + model.safetensors), a Hugging Face repo id in "
              "the local cache (e.g. stabilityai/stable-audio-open-small; offline), or a built-in model: "
              f"{builtin_names()} (`edgegen list`).")
model_option = click.option("--model", "-m", required=True, help=MODEL_HELP)
target_option = click.option("--target", "-t", required=True,
                             help=f"Target profile: {_names('export_targets')} (`edgegen list`), or a .toml path.")
recipe_option = click.option("--recipe", "-r", required=True,
                             help=f"Quantization recipe: {_names('quantize')} (`edgegen list`), or a .toml path.")
seconds_option = click.option("--seconds", "-s", type=float, default=None,
                              help=f"Audio length (seconds_total). Default: {DEFAULT_SECONDS:g} s, or the model's or "
                                   "bundle's maximum (`edgegen info`) when that is less.")
wav_output_option = click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
                                 help="WAV file to write (float32, or 16-bit PCM with --pcm16).")
t5_option = click.option("--t5", type=click.Path(file_okay=False, path_type=Path), default=_hf_hub_cache,
                         help="T5 folder (config.json, model.safetensors or pytorch_model.bin, spiece.model), or a "
                              "Hugging Face hub cache holding t5-base / google-t5/t5-base. Default: the hub cache "
                              "($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), searched offline.")
t5_precision_option = click.option(
    "--t5-precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
    help="T5 weights: fp16 rounds them through float16 as upstream stable-audio-tools loads them (what SAO-small was "
         "trained on; compute stays fp32); fp32 keeps them as stored.")
truncate_prompt_option = click.option(
    "--truncate-prompt", is_flag=True,
    help="Cut a prompt longer than the model's max_length tokens to its first max_length - 1 (and EOS) instead of "
         "refusing it; says so on stderr and stdout.")
init_audio_options = options(
    click.option("--init-audio", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Audio-to-audio: start from this recording (WAV, FLAC, OGG; resampled, made stereo, cropped or "
                      "padded to the model's length, each change noted on stderr)."),
    click.option("--init-noise-level", type=float, default=None,
                 help="With --init-audio: the noise level S sampling starts from, 0 < S <= 1 (default 0.5); small S "
                      "stays close to the recording, 1 is text-to-audio."))
bundle_option = click.option("--bundle", "-b", required=True, type=click.Path(path_type=Path),
                             help="Bundle folder or .zip made by `edgegen export`.")
threads_option = click.option("--threads", type=click.IntRange(1, 256), default=None,
                              help="Runtime threads (default: the bundle's target profile).")
weight_cache_options = options(
    click.option("--weight-cache", type=click.Path(path_type=Path), default=None,
                 help="LiteRT: XNNPACK weight cache folder, created if missing; the first run packs each artifact's "
                      "weights into a file there, later runs map it instead of reading the model's weights (default: "
                      "$EDGEGEN_WEIGHT_CACHE, else $XDG_CACHE_HOME/edgegen/xnnpack, else ~/.cache/edgegen/xnnpack, "
                      "as the native runner)."),
    click.option("--no-weight-cache", is_flag=True,
                 help="LiteRT: pack the weights in memory on every load (no cache files)."))
low_memory_option = click.option("--low-memory", is_flag=True,
                                 help="Load each artifact only for its stage and drop it after: peak memory of the "
                                      "largest stage instead of all three, loading timed inside every generation.")


def adb_options(verb: str):
    """--adb, --serial, --runner, --adb-path: `verb` ("run", "time") the bundle on a phone with the native runner."""
    return options(
        click.option("--adb", "use_adb", is_flag=True,
                     help=f"{verb.capitalize()} the bundle on an Android phone with the native runner."),
        click.option("--serial", default=None, help="adb device serial (with --adb; needed when several are connected)."),
        click.option("--runner", "runner_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("build/runner-android-arm64-portable"), show_default=True,
                     help="Runner folder for the phone (--adb): `edgegen build-runner --target "
                          "android-arm64-portable` (no NDK needed), or an android-arm64 NDK build."),
        click.option("--adb-path", default="adb", show_default=True, help="The adb executable (--adb)."))


# the commands register themselves on `main` when imported (after the shared options above exist)
from edgegen.cli import check, corpus, export, generate, judge, train  # noqa: E402,F401
