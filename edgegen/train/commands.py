"""`edgegen train ...`: thin click commands over edgegen.train (the lead adds `main.add_command(train)`).

    edgegen train synth --out data/ --count 400 --model random:tiny
    edgegen train cache --model random:tiny --captions data/captions.jsonl --out runs/cache.pt
    edgegen train rf  --model random:tiny --cache runs/cache.pt --out runs/base --steps 600 --lr 1e-3
    edgegen train arc --model runs/base/model --t5 runs/base/t5 --cache runs/cache.pt --out runs/arc --steps 100 --lr 1e-5 --head-channels 32

Under `torchrun --nproc_per_node N`, rf and arc train with DistributedDataParallel (nccl on GPUs, else gloo).
Re-running with --resume continues a run from its last saved state up to --steps in total.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edgegen.errors import EdgegenError


class _Group(click.Group):
    """EdgegenError -> one line on stderr and exit status 2 (also when run standalone)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgegenError as exc:
            click.echo(f"edgegen: error: {exc}", err=True)
            sys.exit(2)


def _echo(record: dict) -> None:
    click.echo("  ".join(f"{k} {v}" for k, v in record.items()), err=True)


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun


_model = click.option("--model", "-m", required=True, help="Model folder (official layout) or random:tiny.")
_t5 = click.option("--t5", type=click.Path(file_okay=False, path_type=Path), default=None,
                   help="T5 folder (a base run writes one to OUT/t5 for random:* models).")
_cache = click.option("--cache", required=True, type=click.Path(dir_okay=False, path_type=Path),
                      help="Latent cache from `edgegen train cache`.")
_out = click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
                    help="Run folder: state.pt, log.jsonl, model/ (official layout).")
_steps = click.option("--steps", type=click.IntRange(1), required=True, help="Total steps (also when resuming).")
_batch = click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Per process.")
_seed = click.option("--seed", type=int, default=0, show_default=True)
_resume = click.option("--resume", is_flag=True, help="Continue the run saved in --out.")
_every = click.option("--save-every", type=click.IntRange(1), default=500, show_default=True)


@click.group(cls=_Group)
def train():
    """Train base models (rectified flow) and post-train them with ARC."""


@train.command()
@_model
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(1), default=400, show_default=True)
@_seed
def synth(model, out, count, seed):
    """Write a synthetic captioned corpus (tones, chords, noise, rhythms, sweeps) at MODEL's rate/length."""
    from edgegen.pipeline import load_pipeline
    from edgegen.train.data import write_synthetic

    pipe = load_pipeline(model) if str(model).startswith("random:") else None
    if pipe is None:
        raise EdgegenError("synth takes a built-in model (random:tiny) for its sample rate and length")
    path = write_synthetic(out, count=count, sample_rate=pipe.sample_rate, seconds=pipe.max_seconds, seed=seed)
    click.echo(f"wrote {count} clips and {path}")


@train.command()
@_model
@_t5
@click.option("--captions", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV or JSONL with path, caption[, seconds] (paths relative to this file).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path))
def cache(model, t5, captions, out):
    """Encode a captioned audio folder once: VAE latents + frozen T5 conditioning."""
    from edgegen.pipeline import load_pipeline
    from edgegen.train.data import build_cache, read_captions

    report = build_cache(pipe=load_pipeline(model, t5=t5), records=read_captions(captions), root=captions.parent,
                         out=out)
    click.echo(report.summary())


@train.command()
@_model
@_t5
@_cache
@_out
@_steps
@_batch
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--ema-beta", type=float, default=0.9999, show_default=True)
@click.option("--dit", "dit_shape", default=None, metavar="WIDTH,DEPTH,HEADS",
              help="Start from a fresh random DiT of this shape (e.g. 128,4,2) instead of MODEL's.")
@_seed
@_resume
@_every
def rf(model, t5, cache, out, steps, batch_size, lr, ema_beta, dit_shape, seed, resume, save_every):
    """Train a base model with the rectified-flow objective."""
    from edgegen.train.rf import RFConfig, train_rf

    dit = None
    if dit_shape:
        try:
            width, depth, heads = (int(v) for v in dit_shape.split(","))
        except ValueError:
            raise EdgegenError(f"--dit {dit_shape!r}: expected WIDTH,DEPTH,HEADS, e.g. 128,4,2") from None
        dit = {"embed_dim": width, "depth": depth, "num_heads": heads}
    cfg = RFConfig(lr=lr, ema_beta=ema_beta, batch_size=batch_size, seed=seed)
    path = train_rf(model=model, t5=t5, cache=cache, out=out, cfg=cfg, steps=steps, dit=dit, resume=resume,
                    distributed=_distributed(), save_every=save_every, log=_echo)
    click.echo(f"base model: {path}")


@train.command()
@_model
@_t5
@_cache
@_out
@_steps
@_batch
@click.option("--lr", type=float, default=1e-6, show_default=True, help="G and D learning rate.")
@click.option("--ema-beta", type=float, default=0.9999, show_default=True)
@click.option("--contrastive-weight", type=float, default=1.0, show_default=True, help="0 disables L_C.")
@click.option("--no-grad-penalty", is_flag=True, help="Drop the approximate R1/R2 penalty.")
@click.option("--hidden-layer", type=int, default=None, help="D exits after this DiT block (default 0.75 x depth).")
@click.option("--head-channels", type=click.IntRange(1), default=128, show_default=True,
              help="Width of D's ConvNeXt head (128 for SAO-small; 32 suits random:tiny-sized DiTs).")
@_seed
@_resume
@_every
def arc(model, t5, cache, out, steps, batch_size, lr, ema_beta, contrastive_weight, no_grad_penalty, hidden_layer,
        head_channels, seed, resume, save_every):
    """Post-train a base model with ARC (adversarial relativistic-contrastive) for few-step sampling."""
    from edgegen.train.arc import ARCConfig, train_arc

    cfg = ARCConfig(lr_generator=lr, lr_discriminator=lr, ema_beta=ema_beta, contrastive=contrastive_weight > 0,
                    weight_contrastive=contrastive_weight, grad_penalty=not no_grad_penalty,
                    dit_hidden_layer=hidden_layer, head_channels=head_channels, batch_size=batch_size, seed=seed)
    path = train_arc(model=model, t5=t5, cache=cache, out=out, cfg=cfg, steps=steps, resume=resume,
                     distributed=_distributed(), save_every=save_every, log=_echo)
    click.echo(f"ARC model: {path} (sample with 8 ping-pong steps)")


if __name__ == "__main__":
    train()
