"""Rectified-flow training of a base DiT on cached latents.

    x_t = (1 - t) x0 + t eps,   v = eps - x0,   loss = mean (DiT(x_t, t, cross, global) - v)^2

    cfg = RFConfig(lr=1e-3)                         # every field defaults to the SAO-small base recipe
    train_rf(model="random:tiny", t5=None, cache=Path("cache.safetensors"), out=Path("runs/base"), cfg=cfg, steps=1000)

t ~ sigmoid(N(0, 1)) (logit-normal), prompts dropped (cross tokens zeroed, as the pipeline's CFG branch does)
with probability `cfg_dropout`, AdamW with upstream's InverseLR schedule, gradient clipping, EMA. The EMA DiT
is written to out/model in the official layout with diffusion_objective "rectified_flow".
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from edgegen.train import loop
from edgegen.train.checks import SharedSettings, check_number
from edgegen.train.data import LatentData


@dataclass(frozen=True)
class RFConfig(SharedSettings):
    """SAO-small's base recipe: AdamW (the shared settings) with an InverseLR schedule; CFG dropout 0.1."""
    lr: float = 2e-4
    inv_gamma: float = 1e6                  # InverseLR: lr * (1 - warmup^(k+1)) * (1 + k / inv_gamma)^-power
    lr_power: float = 0.5
    warmup: float = 0.995
    latent_scale: float = 1.0               # the DiT trains on latents / (model's pretransform.scale x this);
                                            # the product is stored as the written model's pretransform.scale.
                                            # Latents of std ~s want s: unit scale is what the logSNR window and
                                            # the ping-pong schedule assume (upstream scales in the pretransform)

    def check(self) -> None:
        """Every field in its range (one line naming the first that is not)."""
        self.check_shared()
        check_number("lr", self.lr, lo=0, lo_open=True)
        check_number("inv_gamma", self.inv_gamma, lo=0, lo_open=True)
        check_number("lr_power", self.lr_power, lo=0)
        check_number("warmup", self.warmup, lo=0, hi=1, hi_open=True)
        check_number("latent_scale", self.latent_scale, lo=0, lo_open=True)


def sample_t(batch: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Logit-normal noise levels t = sigmoid(N(0, 1)): [B]."""
    return torch.sigmoid(loop.randn((batch,), g, device))


def rf_loss(dit, x0, cross, glob, *, t, eps) -> torch.Tensor:
    """Velocity-matching MSE for x0 [B, 64, T] at levels t [B] with noise eps [B, 64, T]."""
    tb = t[:, None, None]
    xt = (1 - tb) * x0 + tb * eps
    return F.mse_loss(dit(xt, t, cross, glob), eps - x0)


def inverse_lr(cfg: RFConfig):
    return lambda k: (1 - cfg.warmup ** (k + 1)) * (1 + k / cfg.inv_gamma) ** -cfg.lr_power


def rf_step(dit, data: LatentData, cfg: RFConfig, *, step: int, run: loop.Run, scale: float = 1.0) -> torch.Tensor:
    """The loss of one step's batch (its sampling is a pure function of (seed, rank, step)); the DiT sees the
    cached latents / scale."""
    g = loop.step_generator(cfg.seed, run.rank, step)
    idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
    x0, cross, glob = (v.to(run.device) for v in data.batch(idx))
    x0 = x0 / scale
    keep = (loop.rand((cfg.batch_size,), g, run.device) >= cfg.cfg_dropout).float()
    cross = cross * keep[:, None, None]  # dropped prompts: zero cross tokens, keep the global vector
    t = sample_t(cfg.batch_size, g, run.device)
    return rf_loss(dit, x0, cross, glob, t=t, eps=loop.randn(x0.shape, g, run.device))


def train_rf(*, model: str | Path, t5: str | Path | None, cache: Path, out: Path, cfg: RFConfig, steps: int,
             dit: dict | None = None, resume: bool = False, distributed: bool = False, save_every: int = 500,
             log_every: int = 50, log: loop.Log | None = None) -> Path:
    """Train (or fine-tune) `model`'s DiT with rectified flow for `steps` steps in total; returns out/model.

    `dit` ({embed_dim, depth, num_heads}) starts from a fresh random DiT of that shape instead of the model's.
    Everything is checked before `out` is created; a run that fails before writing anything leaves no folder.
    """
    cfg.check()
    for name, value in (("steps", steps), ("save_every", save_every), ("log_every", log_every)):
        check_number(name, value, lo=1, integer=True)
    run = loop.start(distributed=distributed)
    try:
        settings = {**asdict(cfg), "model": str(model), "dit": dit, "world": run.world}
        state = loop.check_run_dir(out, resume=resume, kind="rf", config=settings)
        pipe = loop.source_pipeline(model, t5=t5, dit=dit, seed=cfg.seed)
        data = LatentData.load(cache)
        data.check_fits(pipe, cache)
        scale = pipe.config.vae_scale * cfg.latent_scale
        net = copy.deepcopy(pipe.dit).to(run.device).train().requires_grad_(True)  # pipe stays on the CPU
        ema = loop.frozen_copy(net)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_lr(cfg))
        ddp = loop.wrap(net, run)

        def step(i: int) -> dict:
            loss = rf_step(ddp, data, cfg, step=i, run=run, scale=scale)
            loss.backward()
            norm = loop.clip_and_step(net.parameters(), opt, cfg.clip_grad_norm)
            sched.step()
            loop.ema_update(ema, net, step=i, beta=cfg.ema_beta, power=cfg.ema_power)
            return {"loss": float(loss.detach()), "grad_norm": norm}

        def record(done: int, last: dict) -> dict:
            return {"step": done, "loss": round(last["loss"], 6), "grad_norm": round(last["grad_norm"], 4),
                    "lr": sched.get_last_lr()[0]}

        def finish() -> None:
            loop.write_model(pipe, ema.state_dict(), Path(out) / "model", objective="rectified_flow", scale=scale)

        trainer = loop.Trainer(kind="rf", settings=settings, objects={"dit": net, "ema": ema, "opt": opt,
                                                                       "sched": sched},
                               step=step, record=record, finish=finish)
        loop.fit(trainer, run=run, out=out, state=state, steps=steps, save_every=save_every, log_every=log_every,
                 log=log)
        return Path(out) / "model"
    finally:
        loop.finish(run)
