"""The `edgegen` command: a thin shell over the library; every command is a few lines calling one function."""

from __future__ import annotations

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
            click.echo(f"edgegen: warning: {message}", err=True)

        warnings.showwarning = one_line
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
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def generate(model, t5, prompt, seconds, steps, seed, noise, cfg_scale, pcm16, output):
    """Generate audio with the PyTorch reference pipeline."""
    from edgegen.audio_io import read_noise, write_wav
    from edgegen.pipeline import Timings, load_pipeline

    start = time.perf_counter()
    pipe = load_pipeline(model, t5=t5)
    load_s = time.perf_counter() - start
    pipe.check_seconds(seconds)
    injected = read_noise(noise, (steps, pipe.config.dit.io_channels, pipe.latent_length)) if noise else None
    timings = Timings()
    with click.progressbar(length=steps, label="sampling", file=sys.stderr) as bar:
        wav = pipe.generate(prompt, seconds_total=seconds, steps=steps, seed=seed, noise=injected,
                            cfg_scale=cfg_scale, on_step=lambda i, x: bar.update(1), timings=timings)
    write_wav(output, wav, pipe.sample_rate, pcm16=pcm16)
    click.echo(f"wrote {output} ({wav.shape[1] / pipe.sample_rate:.2f} s, {wav.shape[0]} ch, {pipe.sample_rate} Hz)")
    stages = {"load": load_s, **timings.stages}
    click.echo("  ".join(f"{k} {v:.3f}s" for k, v in stages.items())
               + f"  (dit {stages['dit'] / steps:.3f}s/step)")


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


if __name__ == "__main__":
    main()
