"""ARC post-training (Adversarial Relativistic-Contrastive, arXiv:2505.08175): a base RF DiT -> a few-step
ping-pong generator, with no distillation and no CFG.

Theory, per training example (x0 a real latent [64, T], c its prompt conditioning); after `disc_warmup_steps`
D-only steps, G and D alternate (G first):

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
a batch of 2 one of its negatives was the item's own prompt. A rolled prompt can still be the item's own
(same caption) or its class's: `contrastive_skip` leaves such items out of L_C's mean (default: same prompt;
with 8 classes in a batch of 16 about one negative in eight shares the class).

Balance (issue 12): an untrained head scores every input about alike, so a D as slow as G never leaves chance
(loss log 2) and G climbs a random critic. D therefore learns 10x faster than G, both with GAN Adam betas
(0.5, 0.99), and D trains alone for `disc_warmup_steps` before the alternation starts; the end of the warm-up
checks that D's loss fell below `disc_warmup_max_loss` (one error line when it did not).

Self-forcing (`chain_steps`, off by default as upstream's ARC): on a share `chain_fraction` of the steps G's input
is a state of its own N-step ping-pong chain instead of a noised real latent (`chain_input`), so the calls after
the first in a sampled chain are trained too; measured to keep the 8-step result from drifting
(benchmarks/arc/JOURNAL.md).

Latent scale: the DiT works on cached latents divided by the model's stored `pretransform.scale`
(`RFConfig.latent_scale` sets it for a base trained here), so x ~ unit scale as the logSNR window and the
ping-pong schedule assume; ARC keeps the base's scale.

    cfg = ARCConfig()                                   # the engaged recipe: lr G 1e-5 / D 1e-4, betas (0.5, 0.99)
    train_arc(model=Path("runs/base/model"), t5=Path("runs/base/t5"), cache=..., out=..., cfg=cfg, steps=2000)
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.distributed as dist
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from edgegen.errors import EdgegenError
from edgegen.sampler import schedule
from edgegen.train import loop
from edgegen.train.checks import SharedSettings, check_number
from edgegen.train.data import LatentData


@dataclass(frozen=True)
class ARCConfig(SharedSettings):
    """AdamW for G and D with the shared settings (EMA of G, updated on G steps), no CFG dropout.

    The author's SAO-small ARC config uses lr 1e-6 for both and betas (0.9, 0.95); on the synthetic task that D
    never leaves chance (issue 12). The defaults below are the balance measured to engage
    (benchmarks/arc/JOURNAL.md)."""
    lr_generator: float = 1e-5              # G: constant, or halving every `lr_generator_half_life` G steps
    lr_discriminator: float = 1e-4          # D: 10x G, so the critic leads
    betas: tuple[float, float] = (0.5, 0.99)  # GAN Adam betas for G and D (upstream config: (0.9, 0.95))
    disc_warmup_steps: int = 200            # D-only steps before the G/D alternation (counted in `steps`)
    disc_warmup_max_loss: float | None = 0.6  # end of warm-up: mean D loss must be below this (log 2 = 0.693
                                            # is chance); None skips the check
    lr_generator_half_life: int = 0         # G steps per halving of G's lr; 0 keeps it constant (upstream)
    ema_before_step: bool = True            # upstream updates the EMA before G's optimizer step (it lags one)
    logsnr_min: float = -6.0                # generator t = sigmoid(-U(logsnr_min, logsnr_max))
    logsnr_max: float = 2.0
    disc_mean: float = 0.0                  # discriminator s = sigmoid(N(disc_mean, disc_std))
    disc_std: float = 1.0
    dit_hidden_layer: int | None = None     # None: D keeps round(13/16 x depth) blocks (upstream: 0..12 of 16)
    head_channels: int = 128                # ConvNeXt head
    head_c_mults: tuple[int, ...] = (1, 2, 4)
    head_strides: tuple[int, ...] = (1, 2, 2)
    head_blocks: tuple[int, ...] = (2, 2, 2)
    head_zero_residual: bool = False        # False: live residual branches, what upstream trains (its zeros_ on
                                            # a weight-normed conv's .weight is recomputed away); True zeroes g
    weight_generator: float = 1.0
    weight_discriminator: float = 1.0
    contrastive: bool = True
    weight_contrastive: float = 1.0         # lambda
    contrastive_skip: str = "same_prompt"   # rolled negatives left out of L_C: "none" (upstream), "same_prompt"
                                            # (the item's own prompt again), "same_label" (same class label)
    grad_penalty: bool = True               # approximate R1 + R2 (upstream: sum over frames, batch mean, (R1+R2)/2)
    penalty_sigma: float = 0.05
    penalty_weight: float = 1.0
    cfg_dropout: float = 0.0
    chain_steps: tuple[int, ...] = ()       # ping-pong chains G is also trained on (self-forcing); () = upstream
    chain_fraction: float = 0.5             # share of steps whose fake comes out of such a chain

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
        check("disc_warmup_steps", self.disc_warmup_steps, lo=0, integer=True)
        if self.disc_warmup_max_loss is not None:
            check("disc_warmup_max_loss", self.disc_warmup_max_loss, lo=0, lo_open=True)
        check("lr_generator_half_life", self.lr_generator_half_life, lo=0, integer=True)
        for v in self.chain_steps:
            check("chain_steps", v, lo=2, integer=True)
        check("chain_fraction", self.chain_fraction, lo=0, hi=1)
        if self.contrastive_skip not in CONTRASTIVE_SKIP:
            raise EdgegenError(f"contrastive_skip {self.contrastive_skip!r} is not allowed: expected one of "
                               f"{', '.join(CONTRASTIVE_SKIP)}")
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


CONTRASTIVE_SKIP = ("none", "same_prompt", "same_label")


def hidden_layer(cfg: ARCConfig, depth: int) -> int:
    """D's exit block: upstream keeps blocks 0..12 of SAO-small's 16, so by default round(13/16 x depth) blocks."""
    layer = cfg.dit_hidden_layer if cfg.dit_hidden_layer is not None else max(0, round(13 * depth / 16) - 1)
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


def contrastive_loss(matched: torch.Tensor, mismatched: torch.Tensor,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """Real audio scored with its own prompt should beat the same audio with a rolled prompt: mean softplus over
    frames, then over the items `keep` [B] (bool) marks as true negatives (all when None; 0 when none are)."""
    if keep is None:
        return F.softplus(mismatched - matched).mean()
    per_item = F.softplus(mismatched - matched).flatten(1).mean(1)
    w = keep.to(per_item.dtype)
    return (per_item * w).sum() / w.sum().clamp(min=1)


def rolled_negatives(groups: torch.Tensor) -> torch.Tensor:
    """groups [B] (a prompt or label id per item) -> bool [B]: True where the prompt rolled onto item i (item
    i + 1's) belongs to another group, i.e. is a real negative for item i."""
    return groups != groups.roll(-1)


def roll_prompts(cross: torch.Tensor) -> torch.Tensor:
    """cross [B, L + 1, C] with item i's prompt tokens taken from item (i + 1) % B; the last (seconds) token
    stays. A new tensor: the input is untouched."""
    return torch.cat([cross[:, :-1].roll(-1, dims=0), cross[:, -1:]], dim=1)


def approx_penalty(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Approximate R1 (or R2): sum over frames of (D(x + sigma delta) - D(x))^2, mean over the batch (upstream's
    current training/arc.py; the loss adds (R1 + R2) / 2 with weight 1)."""
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
    """x + down(GELU(up(dwconv7(x)))), [B, C, T] -> [B, C, T]. The down projection's bias starts at zero; its
    weight is live (upstream zeroes `.weight` of a weight-normed conv, which the parametrization recomputes from
    g and v at the next forward: a no-op). `zero_residual` zeroes g instead, so the block starts as the identity."""

    def __init__(self, channels: int, mult: int = 4, *, zero_residual: bool = False):
        super().__init__()
        self.dw = weight_norm(nn.Conv1d(channels, channels, 7, padding=3, groups=channels))
        self.up = weight_norm(nn.Conv1d(channels, channels * mult, 1))
        self.down = weight_norm(nn.Conv1d(channels * mult, channels, 1))
        with torch.no_grad():
            self.down.bias.zero_()
            if zero_residual:
                self.down.parametrizations.weight.original0.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.dw(x))))


class ConvNeXtHead(nn.Module):
    """Hidden states [B, D, N] -> per-frame logits [B, N']. Each stage's downsampling conv has kernel 2 x stride
    and padding ceil(stride / 2), as upstream's ConvNextEncoderBlock (stride 1: kernel 2, N -> N + 1)."""

    def __init__(self, in_channels: int, *, channels: int, c_mults, strides, num_blocks, zero_residual: bool = False):
        super().__init__()
        ch = [channels * m for m in (1, *c_mults)]
        layers: list[nn.Module] = [weight_norm(nn.Conv1d(in_channels, ch[0], 7, padding=3))]
        for i, (stride, blocks) in enumerate(zip(strides, num_blocks)):
            layers += [ConvNeXtBlock(ch[i], zero_residual=zero_residual) for _ in range(blocks)]
            layers.append(weight_norm(nn.Conv1d(ch[i], ch[i + 1], 2 * stride, stride=stride,
                                                padding=math.ceil(stride / 2))))
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
                                 strides=cfg.head_strides, num_blocks=cfg.head_blocks,
                                 zero_residual=cfg.head_zero_residual)

    def forward(self, x, s, cross, glob):
        h = self.backbone.hidden_states(x, s, cross, glob)  # (B, 1 + T, D)
        return self.head(h.transpose(1, 2))  # (B, T')


# --- one step -------------------------------------------------------------------------------------------

def chain_input(G, shape, cross, glob, cfg: ARCConfig, g: torch.Generator, device) -> tuple | None:
    """For a share `chain_fraction` of the steps (None for the others, and always when `chain_steps` is empty):
    G's input at an inner level of its own ping-pong chain, (x_t [B, 64, T], t [B, 1, 1]).

    Plain ARC trains G only on noised *real* latents, but in an N-step ping-pong chain every call after the first
    sees a re-noised G output; the excess energy of the 8-step chain builds up there (benchmarks/arc/JOURNAL.md).
    Here N is drawn from `chain_steps` and k from 1..N-1, G runs the first k steps of the sampler's own schedule without
    gradients from fresh noise, and the step's fake is G's jump from level t_k (backward simulation, as DMD2 and
    upstream's self-forcing ARC train multi-step generators). D sees the same kind of fakes on its steps."""
    if not cfg.chain_steps or float(loop.rand((1,), g, device)) >= cfg.chain_fraction:
        return None
    n = cfg.chain_steps[int(torch.randint(len(cfg.chain_steps), (1,), generator=g))]
    k = int(torch.randint(1, n, (1,), generator=g))
    ts = torch.from_numpy(schedule(n)).to(device)
    B = shape[0]
    with torch.no_grad():
        x = loop.randn(shape, g, device)
        for i in range(k):
            x0_hat = x - ts[i] * G(x, ts[i].expand(B), cross, glob)
            x = (1 - ts[i + 1]) * x0_hat + ts[i + 1] * loop.randn(shape, g, device)
    return x, ts[k].expand(B)[:, None, None]


def _pair(G, x0, cross, glob, cfg: ARCConfig, g: torch.Generator, device) -> tuple:
    """(real_s, fake_s, s, x0_hat): the paired re-noised real and one-step generated latents [B, 64, T]; the
    generator's input is the noised real latent, or an inner state of its own chain (`chain_input`)."""
    B = x0.shape[0]
    chained = chain_input(G, x0.shape, cross, glob, cfg, g, device)
    if chained is None:
        t = sample_t(B, cfg, g, device)[:, None, None]
        xt = (1 - t) * x0 + t * loop.randn(x0.shape, g, device)
    else:
        xt, t = chained
    x0_hat = xt - t * G(xt, t[:, 0, 0], cross, glob)
    s = sample_s(B, cfg, g, device)
    n = loop.randn(x0.shape, g, device)
    sb = s[:, None, None]
    return (1 - sb) * x0 + sb * n, (1 - sb) * x0_hat + sb * n, s, x0_hat


def arc_losses(G, D, batch, cfg: ARCConfig, *, train_generator: bool, g: torch.Generator,
               device: torch.device) -> dict[str, torch.Tensor]:
    """The losses of one G step ({"g", "total"}) or one D step ({"d", "contrastive", "penalty", "total"}), plus
    detached diagnostics: G step "out_std" (std of G's one-step x0 estimate / the real batch's); D step "d_gap"
    (mean D(real) - D(fake)), "r1", "r2". `batch` is (x0, cross, glob) or (x0, cross, glob, groups [B]): with
    groups, a rolled negative of the item's own group is left out of L_C (see ARCConfig.contrastive_skip)."""
    x0, cross, glob = batch[:3]
    groups = batch[3] if len(batch) > 3 else None
    B = x0.shape[0]
    if cfg.cfg_dropout > 0:
        cross = cross * (loop.rand((B,), g, device) >= cfg.cfg_dropout).float()[:, None, None]
    if train_generator:
        real, fake, s, x0_hat = _pair(G, x0, cross, glob, cfg, g, device)
        scores = D(torch.cat([real, fake]), s.repeat(2), cross.repeat(2, 1, 1), glob.repeat(2, 1))
        loss = generator_loss(*scores.chunk(2)) * cfg.weight_generator
        return {"g": loss.detach(), "total": loss, "out_std": (x0_hat.detach().std() / x0.std()).detach()}
    with torch.no_grad():
        real, fake, s, _ = _pair(G, x0, cross, glob, cfg, g, device)
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
    diag = {"d_gap": (scores[0] - scores[1]).mean()}
    if cfg.contrastive:
        keep = rolled_negatives(groups) if groups is not None and cfg.contrastive_skip != "none" else None
        out["contrastive"] = contrastive_loss(scores[0], scores[2], keep) * cfg.weight_contrastive \
            * cfg.weight_discriminator
    if cfg.grad_penalty:
        r1, r2 = approx_penalty(scores[0], scores[-2]), approx_penalty(scores[1], scores[-1])
        out["penalty"] = (r1 + r2) / 2 * cfg.penalty_weight
        diag.update(r1=r1, r2=r2)
    out["total"] = sum(out.values())
    return {k: (v if k == "total" else v.detach()) for k, v in {**out, **diag}.items()}


def is_generator_step(step: int, cfg: ARCConfig) -> bool:
    """D alone for the first `disc_warmup_steps` steps, then G on even, D on odd steps counted from there."""
    return step >= cfg.disc_warmup_steps and (step - cfg.disc_warmup_steps) % 2 == 0


def generator_steps(step: int, cfg: ARCConfig) -> int:
    """How many G steps come before `step`."""
    return max(0, step - cfg.disc_warmup_steps + 1) // 2


def optimizers(G: nn.Module, D: nn.Module, cfg: ARCConfig) -> tuple:
    """(opt_g, opt_d, sched_g): AdamW at lr_generator / lr_discriminator with the GAN betas; G's lr halves every
    lr_generator_half_life G steps (0: constant)."""
    opt_g = torch.optim.AdamW(G.parameters(), lr=cfg.lr_generator, betas=cfg.betas, eps=cfg.eps,
                              weight_decay=cfg.weight_decay)
    opt_d = torch.optim.AdamW(D.parameters(), lr=cfg.lr_discriminator, betas=cfg.betas, eps=cfg.eps,
                              weight_decay=cfg.weight_decay)
    half = cfg.lr_generator_half_life
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda k: 0.5 ** (k / half) if half else 1.0)
    return opt_g, opt_d, sched_g


def check_warmup(d_losses: list[float], cfg: ARCConfig, run: loop.Run) -> float:
    """The mean D loss over the warm-up's last steps (averaged over processes); one error line when it is not
    below disc_warmup_max_loss: G must not start against a critic at chance."""
    mean = torch.tensor(sum(d_losses) / max(1, len(d_losses)), device=run.device)
    if run.world > 1:
        dist.all_reduce(mean)
        mean /= run.world
    mean = float(mean)
    if cfg.disc_warmup_max_loss is not None and not mean < cfg.disc_warmup_max_loss:
        raise EdgegenError(f"the discriminator did not learn in its {cfg.disc_warmup_steps} warm-up steps: D loss "
                           f"{mean:.4f} over the last {len(d_losses)} (chance is log 2 = 0.6931; the check wants < "
                           f"{cfg.disc_warmup_max_loss:g}); raise lr_discriminator or disc_warmup_steps")
    return mean


def train_arc(*, model: str | Path, t5: str | Path | None, cache: Path, out: Path, cfg: ARCConfig, steps: int,
              resume: bool = False, distributed: bool = False, save_every: int = 500, log_every: int = 50,
              snapshot_every: int = 0, log: loop.Log | None = None) -> Path:
    """Post-train `model` (a base RF model) for `steps` steps in total (the D-only warm-up, then alternating G/D);
    returns out/model, the EMA generator in the official layout with diffusion_objective "rf_denoiser".
    Each log record holds the means over its window; `snapshot_every` > 0 also keeps G and EMA weights every
    that many steps after the warm-up (out/snapshots/), for choosing a checkpoint. Everything is checked before
    `out` is created; a run that fails before writing anything leaves no folder."""
    cfg.check()
    for name, value in (("steps", steps), ("save_every", save_every), ("log_every", log_every)):
        check_number(name, value, lo=1, integer=True)
    check_number("snapshot_every", snapshot_every, lo=0, integer=True)
    run = loop.start(distributed=distributed)
    try:
        settings = {**asdict(cfg), "model": str(model), "world": run.world}
        state = loop.check_run_dir(out, resume=resume, kind="arc", config=settings)
        pipe = loop.source_pipeline(model, t5=t5)
        exit_layer = hidden_layer(cfg, pipe.config.dit.depth)
        data = LatentData.load(cache)
        data.check_fits(pipe, cache)
        scale = pipe.config.vae_scale  # the base's DiT works on latents / scale
        G = copy.deepcopy(pipe.dit).to(run.device).train().requires_grad_(True)
        with torch.random.fork_rng():  # the head's init is a function of the seed; the global RNG is untouched
            torch.manual_seed(cfg.seed)
            D = Discriminator(pipe.dit, exit_layer=exit_layer, cfg=cfg)
        D = D.to(run.device).train().requires_grad_(True)
        ema = loop.frozen_copy(G)
        opt_g, opt_d, sched_g = optimizers(G, D, cfg)
        G_ddp, D_ddp = loop.wrap(G, run), loop.wrap(D, run)
        sums, counts, warm_d = defaultdict(float), defaultdict(int), []

        def step(i: int) -> dict:
            g = loop.step_generator(cfg.seed, run.rank, i)
            idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
            x0, cross, glob = data.batch(idx)
            batch = (x0 / scale, cross, glob, data.groups(idx, by=cfg.contrastive_skip))
            batch = tuple(v.to(run.device) for v in batch)
            if is_generator_step(i, cfg):  # D's raw module: its parameters are frozen for this step, no DDP sync
                D.requires_grad_(False)
                losses = arc_losses(G_ddp, D, batch, cfg, train_generator=True, g=g, device=run.device)
                losses["total"].backward()
                D.requires_grad_(True)
                k = generator_steps(i, cfg)
                if cfg.ema_before_step:
                    loop.ema_update(ema, G, step=k, beta=cfg.ema_beta, power=cfg.ema_power)
                losses["lr_g"] = sched_g.get_last_lr()[0]
                losses["g_grad_norm"] = loop.clip_and_step(G.parameters(), opt_g, cfg.clip_grad_norm)
                sched_g.step()
                if not cfg.ema_before_step:
                    loop.ema_update(ema, G, step=k, beta=cfg.ema_beta, power=cfg.ema_power)
            else:
                losses = arc_losses(G, D_ddp, batch, cfg, train_generator=False, g=g, device=run.device)
                losses["total"].backward()
                losses["d_grad_norm"] = loop.clip_and_step(D.parameters(), opt_d, cfg.clip_grad_norm)
                if i < cfg.disc_warmup_steps:
                    warm_d.append(float(losses["d"]))
            numbers = {k: float(v) for k, v in losses.items() if k != "total"}
            for key, value in numbers.items():
                sums[key] += value
                counts[key] += 1
            if i + 1 == cfg.disc_warmup_steps and warm_d:
                warm = check_warmup(warm_d[-50:], cfg, run)
                if run.main:
                    loop.append_log(out, {"step": i + 1, "warmup_d": round(warm, 5)})
            return numbers

        def record(done: int, last: dict) -> dict:
            """The means over the window since the last record."""
            rec = {k: round(sums[k] / counts[k], 5) for k in sums}
            rec.update(step=done, phase="warmup" if done <= cfg.disc_warmup_steps else "gan")
            sums.clear()
            counts.clear()
            return rec

        def snapshot() -> dict:
            """G's and the EMA's weights ("G/<name>", "ema/<name>"), for choosing a checkpoint."""
            return {**{f"G/{k}": v for k, v in G.state_dict().items()},
                    **{f"ema/{k}": v for k, v in ema.state_dict().items()}}

        def finish() -> None:
            loop.write_model(pipe, ema.state_dict(), Path(out) / "model", objective="rf_denoiser")

        objects = {"G": G, "D": D, "ema": ema, "opt_g": opt_g, "opt_d": opt_d, "sched_g": sched_g}
        trainer = loop.Trainer(kind="arc", settings=settings, objects=objects, step=step, record=record,
                               finish=finish, snapshot=snapshot, snapshot_start=cfg.disc_warmup_steps)
        loop.fit(trainer, run=run, out=out, state=state, steps=steps, save_every=save_every, log_every=log_every,
                 snapshot_every=snapshot_every, log=log)
        return Path(out) / "model"
    finally:
        loop.finish(run)
