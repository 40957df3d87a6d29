"""`edgegen train synth|vae|cache|rf|arc` (edgegen.train), and the option types that check numbers as they parse."""

from __future__ import annotations

from pathlib import Path

import click

from edgegen.cli import err, main, model_option, options, t5_option
from edgegen.errors import EdgegenError


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


_COUNT, _SEED = _Number(1, integer=True), _Number(0, 2**63 - 1, integer=True)  # torch.manual_seed's range
_train_run = options(
    model_option, t5_option,
    click.option("--cache", required=True, type=click.Path(path_type=Path), help="From `edgegen train cache`."),
    click.option("--output", "-o", "--out", "out", required=True, type=click.Path(path_type=Path),
                 help="Run folder: state.safetensors, log.jsonl, model/ (official layout), t5/ for random:* models."),
    click.option("--steps", type=_COUNT, required=True, help="Total steps (also when resuming)."),
    click.option("--batch-size", type=_COUNT, default=32, show_default=True, help="Per process."),
    click.option("--ema-beta", type=_Number(0, 1, hi_open=True), default=0.9999, show_default=True,
                 help="EMA decay of the weights written to model/, in [0, 1)."))
_train_tail = options(
    click.option("--seed", type=_SEED, default=0, show_default=True,
                 help="Seeds initialisation, batches and noise; a resumed run continues the saved one's streams."),
    click.option("--resume", is_flag=True, help="Continue the run saved in --out (an error when there is none)."),
    click.option("--save-every", type=_COUNT, default=500, show_default=True, help="Steps between saved states."))


def _log_record(record: dict) -> None:
    err("  ".join(f"{k} {v}" for k, v in record.items()))


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
    One process trains on the first CUDA GPU when there is one, else on the CPU. Under `torchrun --nproc_per_node N
    -m edgegen.cli train vae|rf|arc ...` they train with DistributedDataParallel (nccl on GPUs, else gloo).
    --resume continues a run from its last saved state up to --steps in total.
    """


@train.command("synth")
@model_option
@click.option("--output", "-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="Folder for the clips and captions.")
@click.option("--count", type=_COUNT, default=400, show_default=True, help="Clips to write.")
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Everything written is deterministic from it.")
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


def _captioned(captions_help: str, output_help: str):
    """MODEL, T5, a captions file and where to write: what `train cache` and `train vae` read first."""
    def wrap(fn):
        for option in reversed((model_option, t5_option,
                                click.option("--captions", required=True, type=click.Path(path_type=Path),
                                             help=captions_help),
                                click.option("--output", "-o", "--out", "out", required=True,
                                             type=click.Path(path_type=Path), help=output_help))):
            fn = option(fn)
        return fn
    return wrap


@train.command("cache")
@_captioned("CSV or JSONL with path, caption[, seconds][, label] (paths relative to this file).",
            "Cache file to write (safetensors).")
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
@_captioned("CSV or JSONL with path, caption (paths relative to this file): the clips to train on.",
            "Run folder: state.safetensors, log.jsonl, model/ (MODEL with this VAE), t5/ for random:* models.")
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
