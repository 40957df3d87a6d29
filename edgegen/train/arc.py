"""ARC post-training (Adversarial Relativistic-Contrastive, arXiv:2505.08175): a base RF DiT -> a few-step
ping-pong generator, with no distillation and no CFG.

Theory, per training example (x0 a real latent [64, T], c its prompt conditioning):

    G step (even steps)   t ~ sigmoid(-U(-6, 2)) (logSNR-uniform),  x_t = (1 - t) x0 + t eps
                          x0_hat = x_t - t G(x_t, t, c)                       (one jump to an x0 estimate)
                          s ~ sigmoid(N(0, 1)) (logit-normal), n ~ N(0, I), shared by the pair:
                          real = (1 - s) x0 + s n,  fake = (1 - s) x0_hat + s n
                          L_G = mean softplus(D(real, s, c) - D(fake, s, c))          (relativistic, paired)
    D step (odd steps)    L_D = mean softplus(-(D(real, s, c) - D(fake, s, c)))        (x0_hat detached)
                              + lambda mean softplus(-(D(real, s, c) - D(real, s, roll(c))))   (contrastive)
                              + w (R1 + R2) / 2,  R = sum_T (D(x + sigma delta) - D(x))^2   (approximate)

D is the first `dit_hidden_layer + 1` blocks of a copy of the base DiT (states [B, 1 + T, D] incl. the
prepended global token) plus a 1-D ConvNeXt head giving per-frame logits [B, T']; both are trained. The
contrastive negatives roll the prompt tokens by one within the batch (a derangement for B >= 2) into new
tensors, leaving the seconds token and global vector alone; upstream mutated its metadata in place, so with
a batch of 2 one of its negatives was the item's own prompt.

    cfg = ARCConfig()                                   # the SAO-small ARC recipe (lr 1e-6, ...)
    train_arc(model=Path("runs/base/model"), t5=Path("runs/base/t5"), cache=..., out=..., cfg=cfg, steps=2000)
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from edgegen.errors import EdgegenError
from edgegen.train import loop
from edgegen.train.checks import SharedSettings, check_number
from edgegen.train.data import LatentData


@dataclass(frozen=True)
class ARCConfig(SharedSettings):
    """AdamW for G and D with the shared settings (EMA of G, updated on G steps), no CFG dropout."""
    lr_generator: float = 1e-6              # no scheduler (author's SAO-small ARC config)
    lr_discriminator: float = 1e-6
    logsnr_min: float = -6.0                # generator t = sigmoid(-U(logsnr_min, logsnr_max))
    logsnr_max: float = 2.0
    disc_mean: float = 0.0                  # discriminator s = sigmoid(N(disc_mean, disc_std))
    disc_std: float = 1.0
    dit_hidden_layer: int | None = None     # None: 12 for 16 blocks, scaled (0.75 x depth) for smaller DiTs
    head_channels: int = 128                # ConvNeXt head
    head_c_mults: tuple[int, ...] = (1, 2, 4)
    head_strides: tuple[int, ...] = (1, 2, 2)
    head_blocks: tuple[int, ...] = (2, 2, 2)
    weight_generator: float = 1.0
    weight_discriminator: float = 1.0
    contrastive: bool = True
    weight_contrastive: float = 1.0         # lambda
    grad_penalty: bool = True               # approximate R1 + R2
    penalty_sigma: float = 0.05
    penalty_weight: float = 1.0
    cfg_dropout: float = 0.0

    def check(self) -> None:
        """Every field in its range (one line naming the first that is not); model-dependent limits (the hidden
        layer) are checked by `hidden_layer`."""
        self.check_shared()
        check = check_number
        for name in ("lr_generator", "lr_discriminator"):
            check(name, getattr(self, name), lo=0, lo_open=True)
        for name in ("weight_generator", "weight_discriminator", "weight_contrastive", "penalty_sigma",
                     "penalty_weight"):
            check(name, getattr(self, name), lo=0)
        check("logsnr_min", self.logsnr_min)
        check("logsnr_max", self.logsnr_max, lo=self.logsnr_min)
        check("disc_mean", self.disc_mean)
        check("disc_std", self.disc_std, lo=0)
        if self.dit_hidden_layer is not None:
            check("dit_hidden_layer", self.dit_hidden_layer, lo=0, integer=True)
        check("head_channels", self.head_channels, lo=1, integer=True)
        if not len(self.head_c_mults) == len(self.head_strides) == len(self.head_blocks) >= 1:
            raise EdgegenError("head_c_mults, head_strides and head_blocks must be non-empty and of one length")
        for name in ("head_c_mults", "head_strides"):
            for v in getattr(self, name):
                check(name, v, lo=1, integer=True)
        for v in self.head_blocks:
            check("head_blocks", v, lo=0, integer=True)
        if self.contrastive and self.batch_size < 2:
            raise EdgegenError(f"batch size {self.batch_size} (--batch-size) is too small for the contrastive loss, "
                               "which rolls prompts within the batch: use >= 2, or --contrastive-weight 0")


def hidden_layer(cfg: ARCConfig, depth: int) -> int:
    layer = cfg.dit_hidden_layer if cfg.dit_hidden_layer is not None else min(depth - 1, round(0.75 * depth))
    if not 0 <= layer < depth:
        raise EdgegenError(f"hidden layer {layer} (--hidden-layer, dit_hidden_layer) is outside the DiT's "
                           f"blocks 0..{depth - 1}")
    return layer


# --- losses (D returns realness logits) ---------------------------------------------------------------

def generator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating relativistic G loss over paired logit maps [B, T']: mean softplus(real - fake)."""
    return F.softplus(real - fake).mean()


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic D loss: mean softplus(-(real - fake)) = -log sigmoid(real - fake)."""
    return F.softplus(fake - real).mean()


def contrastive_loss(matched: torch.Tensor, mismatched: torch.Tensor) -> torch.Tensor:
    """Real audio scored with its own prompt should beat the same audio with a rolled prompt."""
    return F.softplus(mismatched - matched).mean()


def roll_prompts(cross: torch.Tensor) -> torch.Tensor:
    """cross [B, L + 1, C] with item i's prompt tokens taken from item (i + 1) % B; the last (seconds) token
    stays. A new tensor: the input is untouched."""
    return torch.cat([cross[:, :-1].roll(-1, dims=0), cross[:, -1:]], dim=1)


def approx_penalty(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Approximate R1/R2: sum over frames of (D(x + sigma delta) - D(x))^2, mean over the batch."""
    return (noisy - clean).pow(2).flatten(1).sum(1).mean()


def sample_t(batch: int, cfg: ARCConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Generator levels [B]: logSNR ~ U(logsnr_min, logsnr_max), t = sigmoid(-logSNR)."""
    logsnr = cfg.logsnr_min + (cfg.logsnr_max - cfg.logsnr_min) * loop.rand((batch,), g, device)
    return torch.sigmoid(-logsnr)


def sample_s(batch: int, cfg: ARCConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Discriminator levels [B]: logit-normal."""
    return torch.sigmoid(cfg.disc_mean + cfg.disc_std * loop.randn((batch,), g, device))


# --- discriminator --------------------------------------------------------------------------------------

class ConvNeXtBlock(nn.Module):
    """x + down(GELU(up(dwconv7(x)))), [B, C, T] -> [B, C, T]; the residual starts at zero (g = 0)."""

    def __init__(self, channels: int, mult: int = 4):
        super().__init__()
        self.dw = weight_norm(nn.Conv1d(channels, channels, 7, padding=3, groups=channels))
        self.up = weight_norm(nn.Conv1d(channels, channels * mult, 1))
        self.down = weight_norm(nn.Conv1d(channels * mult, channels, 1))
        with torch.no_grad():
            self.down.parametrizations.weight.original0.zero_()
            self.down.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.dw(x))))


class ConvNeXtHead(nn.Module):
    """Hidden states [B, D, N] -> per-frame logits [B, N'] (N' ~ N / prod(strides))."""

    def __init__(self, in_channels: int, *, channels: int, c_mults, strides, num_blocks):
        super().__init__()
        ch = [channels * m for m in (1, *c_mults)]
        layers: list[nn.Module] = [weight_norm(nn.Conv1d(in_channels, ch[0], 7, padding=3))]
        for i, (stride, blocks) in enumerate(zip(strides, num_blocks)):
            layers += [ConvNeXtBlock(ch[i]) for _ in range(blocks)]
            k = 2 * stride if stride > 1 else 1
            layers.append(weight_norm(nn.Conv1d(ch[i], ch[i + 1], k, stride=stride, padding=(k - stride) // 2)))
        layers.append(weight_norm(nn.Conv1d(ch[-1], 1, 3, padding=1)))
        self.layers = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)[:, 0]


class Discriminator(nn.Module):
    """D(x [B, 64, T], s [B], cross [B, 65, C], glob [B, C]) -> logits [B, T'].

    The backbone is a copy of `dit` cut after block `exit_layer` (the later blocks and the output
    projections are dropped, so every parameter gets a gradient, as DDP requires)."""

    def __init__(self, dit: nn.Module, *, exit_layer: int, cfg: ARCConfig):
        super().__init__()
        backbone = copy.deepcopy(dit)
        backbone.transformer.layers = backbone.transformer.layers[: exit_layer + 1]
        backbone.transformer.project_out = nn.Identity()
        backbone.postprocess_conv = nn.Identity()
        self.backbone = backbone
        self.head = ConvNeXtHead(dit.config.embed_dim, channels=cfg.head_channels, c_mults=cfg.head_c_mults,
                                 strides=cfg.head_strides, num_blocks=cfg.head_blocks)

    def forward(self, x, s, cross, glob):
        h = self.backbone.hidden_states(x, s, cross, glob)  # (B, 1 + T, D)
        return self.head(h.transpose(1, 2))  # (B, T')


# --- one step -------------------------------------------------------------------------------------------

def _pair(G, x0, cross, glob, cfg: ARCConfig, g: torch.Generator, device) -> tuple:
    """(real_s, fake_s, s): the paired re-noised real and one-step generated latents [B, 64, T]."""
    B = x0.shape[0]
    t = sample_t(B, cfg, g, device)[:, None, None]
    xt = (1 - t) * x0 + t * loop.randn(x0.shape, g, device)
    x0_hat = xt - t * G(xt, t[:, 0, 0], cross, glob)
    s = sample_s(B, cfg, g, device)
    n = loop.randn(x0.shape, g, device)
    sb = s[:, None, None]
    return (1 - sb) * x0 + sb * n, (1 - sb) * x0_hat + sb * n, s


def arc_losses(G, D, batch, cfg: ARCConfig, *, train_generator: bool, g: torch.Generator,
               device: torch.device) -> dict[str, torch.Tensor]:
    """The losses of one G step ({"g", "total"}) or one D step ({"d", "contrastive", "penalty", "total"})."""
    x0, cross, glob = batch
    B = x0.shape[0]
    if cfg.cfg_dropout > 0:
        cross = cross * (loop.rand((B,), g, device) >= cfg.cfg_dropout).float()[:, None, None]
    if train_generator:
        real, fake, s = _pair(G, x0, cross, glob, cfg, g, device)
        scores = D(torch.cat([real, fake]), s.repeat(2), cross.repeat(2, 1, 1), glob.repeat(2, 1))
        loss = generator_loss(*scores.chunk(2)) * cfg.weight_generator
        return {"g": loss.detach(), "total": loss}
    with torch.no_grad():
        real, fake, s = _pair(G, x0, cross, glob, cfg, g, device)
    xs, cs = [real, fake], [cross, cross]  # one D call over every chunk (DDP wants a single forward)
    if cfg.contrastive:
        xs.append(real)
        cs.append(roll_prompts(cross))
    if cfg.grad_penalty:
        xs += [real + cfg.penalty_sigma * loop.randn(real.shape, g, device),
               fake + cfg.penalty_sigma * loop.randn(fake.shape, g, device)]
        cs += [cross, cross]
    k = len(xs)
    scores = D(torch.cat(xs), s.repeat(k), torch.cat(cs), glob.repeat(k, 1)).chunk(k)
    out = {"d": discriminator_loss(scores[0], scores[1]) * cfg.weight_discriminator}
    if cfg.contrastive:
        out["contrastive"] = contrastive_loss(scores[0], scores[2]) * cfg.weight_contrastive * cfg.weight_discriminator
    if cfg.grad_penalty:
        r1, r2 = approx_penalty(scores[0], scores[-2]), approx_penalty(scores[1], scores[-1])
        out["penalty"] = (r1 + r2) / 2 * cfg.penalty_weight
    out["total"] = sum(out.values())
    return {k: (v if k == "total" else v.detach()) for k, v in out.items()}


def train_arc(*, model: str | Path, t5: str | Path | None, cache: Path, out: Path, cfg: ARCConfig, steps: int,
              resume: bool = False, distributed: bool = False, save_every: int = 500, log_every: int = 50,
              log: loop.Log | None = None) -> Path:
    """Post-train `model` (a base RF model) for `steps` alternating G/D steps in total; returns out/model,
    the EMA generator in the official layout with diffusion_objective "rf_denoiser". Everything is checked
    before `out` is created; a run that fails before writing anything leaves no folder."""
    cfg.check()
    for name, value in (("steps", steps), ("save_every", save_every), ("log_every", log_every)):
        check_number(name, value, lo=1, integer=True)
    run = loop.start(distributed=distributed)
    try:
        settings = {**asdict(cfg), "model": str(model), "world": run.world}
        state = loop.check_run_dir(out, resume=resume, kind="arc", config=settings)
        pipe = loop.source_pipeline(model, t5=t5)
        exit_layer = hidden_layer(cfg, pipe.config.dit.depth)
        data = LatentData.load(cache)
        data.check_fits(pipe, cache)
        G = copy.deepcopy(pipe.dit).to(run.device).train().requires_grad_(True)
        with torch.random.fork_rng():  # the head's init is a function of the seed; the global RNG is untouched
            torch.manual_seed(cfg.seed)
            D = Discriminator(pipe.dit, exit_layer=exit_layer, cfg=cfg)
        D = D.to(run.device).train().requires_grad_(True)
        ema = loop.frozen_copy(G)
        opt_g = torch.optim.AdamW(G.parameters(), lr=cfg.lr_generator, betas=cfg.betas, eps=cfg.eps,
                                  weight_decay=cfg.weight_decay)
        opt_d = torch.optim.AdamW(D.parameters(), lr=cfg.lr_discriminator, betas=cfg.betas, eps=cfg.eps,
                                  weight_decay=cfg.weight_decay)
        start = 0
        if state is not None:
            start = loop.restore(state, {"G": G, "D": D, "ema": ema, "opt_g": opt_g, "opt_d": opt_d}, run_dir=out)
        G_ddp, D_ddp = loop.wrap(G, run), loop.wrap(D, run)
        with loop.new_folder(out):  # the run's folder; removed again if nothing is written into it
            clock, record = time.perf_counter(), {}
            for step in range(start, steps):
                g = loop.step_generator(cfg.seed, run.rank, step)
                idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
                batch = tuple(v.to(run.device) for v in data.batch(idx))
                train_generator = step % 2 == 0
                if train_generator:  # D's raw module: its parameters are frozen for this step, no DDP sync
                    D.requires_grad_(False)
                    losses = arc_losses(G_ddp, D, batch, cfg, train_generator=True, g=g, device=run.device)
                    losses["total"].backward()
                    D.requires_grad_(True)
                    losses["g_grad_norm"] = loop.clip_and_step(G.parameters(), opt_g, cfg.clip_grad_norm)
                    loop.ema_update(ema, G, step=step // 2, beta=cfg.ema_beta, power=cfg.ema_power)
                else:
                    losses = arc_losses(G, D_ddp, batch, cfg, train_generator=False, g=g, device=run.device)
                    losses["total"].backward()
                    losses["d_grad_norm"] = loop.clip_and_step(D.parameters(), opt_d, cfg.clip_grad_norm)
                record.update({k: round(float(v), 5) for k, v in losses.items() if k != "total"})
                done = step + 1
                if run.main and (done % log_every == 0 or done == steps):
                    record.update(step=done, sec=round(time.perf_counter() - clock, 2))
                    loop.append_log(out, record)
                    if log:
                        log(dict(record))
                if run.main and (done % save_every == 0 or done == steps):
                    loop.save_state(out, {"kind": "arc", "config": settings, "step": done, "G": G.state_dict(),
                                          "D": D.state_dict(), "ema": ema.state_dict(), "opt_g": opt_g.state_dict(),
                                          "opt_d": opt_d.state_dict()})
            if run.main:
                loop.write_model(pipe, ema.state_dict(), Path(out) / "model", objective="rf_denoiser")
        return Path(out) / "model"
    finally:
        loop.finish(run)
