"""Training the Oobleck VAE of the SAO family on captioned audio: the first stage of a model made from scratch.

    cfg = VAEConfig(channels=16)                    # SAO-small's strides, 64-channel latents, 1/8 of its width
    train_vae(model="random:tiny", t5=None, captions=Path("data/captions.jsonl"), out=Path("runs/vae"), cfg=cfg,
              steps=2000)                           # -> runs/vae/model (official layout) + runs/vae/t5

Per step, B random crops x [B, 2, crop] of the clips (zero-padded when a clip is shorter) go through

    encoder(x) -> mean, scale [B, 64, crop / 2048];   std = softplus(scale) + 1e-4,  z = mean + std * eps
    x_hat = decoder(z)                              [B, 2, crop]
    loss  = w_stft * MRSTFT(x_hat, x) + w_l1 * |x_hat - x|_1 + w_kl * KL

MRSTFT (auraloss's MultiResolutionSTFTLoss without perceptual weighting) averages, over FFT sizes 2048 ... 32 (hop
1/4, Hann window), spectral convergence ||S - S_hat||_F / ||S||_F plus the L1 distance of log magnitudes; each
stereo channel is its own signal. Upstream's stereo VAE adds the sum and difference (mid / side) channels, with
perceptual weighting; left / right alone is kept here because the side channel of a centred source is ~0, and
spectral convergence divides by it. KL = mean over the batch of sum over channels of mean^2 + var - log var - 1
(upstream's VAEBottleneck). Convolutions train weight-normed as upstream's WNConv1d; the written model folds them
(g = ||w||, v = w). No adversarial term yet (issue 33 asks for one only where measured to help), no EMA.

The run writes out/model: the source model's config and weights (T5, seconds conditioner, DiT) with this VAE in
place of its own (pretransform.model.encoder.* / decoder.*, weight_g / weight_v, pretransform.scale dropped), so
`edgegen train cache` and `train rf` run on its latents. The loop, state, resume and logs are loop.fit's.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from edgegen.components.oobleck import OobleckConfig, OobleckDecoder, OobleckEncoder
from edgegen.config import ModelConfig
from edgegen.errors import EdgegenError
from edgegen.train import loop
from edgegen.train.checks import SEED_MAX, check_number
from edgegen.train.data import read_captions, read_clip, unusable

FAMILY_LATENT_DIM, FAMILY_HOP = 64, 2048  # SAO-small: 64-channel latents, 2048x downsampling
STFT_SIZES = (2048, 1024, 512, 256, 128, 64, 32)  # upstream's MRSTFT resolutions (hop = size / 4)


@dataclass(frozen=True)
class VAEConfig:
    """The VAE's shape (SAO-small's but `channels`: 128 there) and its training recipe."""
    channels: int = 16                      # 2.5 M parameters (5 MB in fp16); 32 is 10.1 M, over issue 33's 20 MB
    c_mults: tuple[int, ...] | None = None  # None: doubling per block, (1, 2, 4, 8, 16) for 5 strides (SAO-small)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    latent_dim: int = 64
    crop: int = 32768                       # samples per training crop (16 latent frames, 0.74 s at 44.1 kHz)
    batch_size: int = 4                     # per process
    lr: float = 1.5e-4                      # upstream's autoencoder AdamW: lr 1.5e-4, betas (0.8, 0.99), wd 1e-3
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 1e-3
    warmup: float = 0.99                    # InverseLR lr * (1 - warmup^(k+1)) * (1 + k / inv_gamma)^-0.5;
    inv_gamma: float = 2e5                  # upstream warms up with 0.999 (1000s of steps), too slow for a CPU run
    clip_grad_norm: float = 1.0             # 0 disables
    weight_stft: float = 1.0                # upstream: mrstft 1.0
    weight_l1: float = 0.1                  # upstream: 0.0 (it has a discriminator); below the spectral term, untuned
    weight_kl: float = 1e-4                 # upstream: kl 1e-4
    seed: int = 0

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def mults(self) -> tuple[int, ...]:
        return tuple(self.c_mults) if self.c_mults is not None else tuple(2 ** i for i in range(len(self.strides)))

    def oobleck(self) -> OobleckConfig:
        return OobleckConfig(channels=self.channels, c_mults=self.mults, strides=tuple(self.strides),
                             latent_dim=self.latent_dim)

    def check(self) -> None:
        """In range and in the SAO-small family (one line naming the first field that is not)."""
        check_number("channels", self.channels, lo=1, hi=1024, integer=True)
        for name in ("mults", "strides"):
            for v in getattr(self, name):
                check_number("c_mults" if name == "mults" else name, v, lo=1, hi=64, integer=True)
        if not 1 <= len(self.strides) == len(self.mults) <= 8:
            raise EdgegenError(f"c_mults {list(self.mults)} and strides {list(self.strides)} must be of one length "
                               "(1 to 8): one encoder block per stride")
        if self.latent_dim != FAMILY_LATENT_DIM or self.hop != FAMILY_HOP:
            raise EdgegenError(f"VAE with latent_dim {self.latent_dim} and strides {list(self.strides)} (hop "
                               f"{self.hop}) is outside the SAO-small family: it needs {FAMILY_LATENT_DIM}-channel "
                               f"latents and strides whose product is {FAMILY_HOP} (e.g. 2,4,4,8,8)")
        check_number("crop", self.crop, lo=self.hop, integer=True)
        if self.crop % self.hop:
            raise EdgegenError(f"crop {self.crop} is not a multiple of the VAE hop {self.hop}: e.g. "
                               f"{max(1, round(self.crop / self.hop)) * self.hop}")
        check_number("batch_size", self.batch_size, lo=1, integer=True)
        check_number("lr", self.lr, lo=0, lo_open=True)
        for i, beta in enumerate(self.betas):
            check_number(f"betas[{i}]", beta, lo=0, hi=1, hi_open=True)
        check_number("weight_decay", self.weight_decay, lo=0)
        check_number("warmup", self.warmup, lo=0, hi=1, hi_open=True)
        check_number("inv_gamma", self.inv_gamma, lo=0, lo_open=True)
        check_number("clip_grad_norm", self.clip_grad_norm, lo=0)
        for name in ("weight_stft", "weight_l1", "weight_kl"):
            check_number(name, getattr(self, name), lo=0)
        check_number("seed", self.seed, lo=0, hi=SEED_MAX, integer=True)


# --- model -----------------------------------------------------------------------------------------------

class Autoencoder(nn.Module):
    """x [B, 2, N] (+ noise [B, 64, N / hop]) -> (x_hat [B, 2, N], kl []): encoder, VAE bottleneck, decoder.
    Every convolution is weight-normed for training (`plain_state` folds them back)."""

    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        self.encoder, self.decoder = OobleckEncoder(cfg), OobleckDecoder(cfg)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                weight_norm(m, dim=0)  # upstream's WNConv1d / WNConvTranspose1d (legacy weight_norm, dim 0)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, scale = self.encoder(x).chunk(2, dim=1)  # (B, 64, T) each
        std = F.softplus(scale) + 1e-4
        var = std * std
        kl = (mean * mean + var - torch.log(var) - 1).sum(1).mean()
        return self.decoder(mean + std * noise), kl

    def plain_state(self, part: str) -> dict[str, torch.Tensor]:
        """The encoder's or decoder's weights with the weight norm folded (the keys of a plain Oobleck module)."""
        module = copy.deepcopy(getattr(self, part)).cpu()
        for m in module.modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight")
        return {k: v.detach().clone() for k, v in module.state_dict().items()}


def stft_magnitude(x: torch.Tensor, size: int) -> torch.Tensor:
    """x [S, N] -> |STFT| [S, size / 2 + 1, frames], floored (sqrt of at least 1e-8) so that log and its gradient
    stay finite."""
    spec = torch.stft(x, size, hop_length=size // 4, win_length=size, window=torch.hann_window(size, device=x.device),
                      return_complex=True)
    return (spec.real.square() + spec.imag.square()).clamp(min=1e-8).sqrt()


def mrstft_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over STFT_SIZES of spectral convergence + log-magnitude L1; x, x_hat [B, 2, N], channels separately."""
    total = x.new_zeros(())
    x_hat, x = x_hat.flatten(0, 1), x.flatten(0, 1)  # (B * 2, N)
    for size in STFT_SIZES:
        s_hat, s = stft_magnitude(x_hat, size), stft_magnitude(x, size)
        total = total + torch.linalg.norm(s - s_hat) / torch.linalg.norm(s) + F.l1_loss(s_hat.log(), s.log())
    return total / len(STFT_SIZES)


def vae_losses(x_hat: torch.Tensor, x: torch.Tensor, kl: torch.Tensor, cfg: VAEConfig) -> dict[str, torch.Tensor]:
    """{"stft", "l1", "kl"} (unweighted, detached) and "loss" (their weighted sum, the one to differentiate)."""
    parts = {"stft": mrstft_loss(x_hat, x), "l1": F.l1_loss(x_hat, x), "kl": kl}
    loss = cfg.weight_stft * parts["stft"] + cfg.weight_l1 * parts["l1"] + cfg.weight_kl * parts["kl"]
    return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}


# --- data ------------------------------------------------------------------------------------------------

class Clips:
    """The clips of a captions file at the model's rate, held as float16 [2, n] (half the memory of float32;
    ~-86 dB rounding at -20 dBFS); `crops` draws a batch."""

    def __init__(self, clips: list[torch.Tensor]):
        self.clips = clips

    @classmethod
    def load(cls, captions: Path, *, sample_rate: int) -> "Clips":
        """Every readable, non-silent clip listed in `captions`; none is one error line naming the first reason."""
        records, clips, skipped = read_captions(captions), [], []
        for rec in records:
            audio, why = read_clip(Path(captions).parent / rec.path, sample_rate=sample_rate)
            why = why or unusable(audio)
            if why:
                skipped.append((rec.path, why))
            else:
                clips.append(torch.from_numpy(np.ascontiguousarray(audio)).half())
        if not clips:
            path, why = skipped[0]
            raise EdgegenError(f"{captions}: no usable audio among its {len(records)} records ({path}: {why}); "
                               "give a captions file whose clips are readable and not silent")
        return cls(clips)

    def crops(self, batch: int, length: int, g: torch.Generator) -> torch.Tensor:
        """[batch, 2, length] float32: clips drawn uniformly, each at a uniform offset (zero-padded if short)."""
        out = torch.zeros(batch, 2, length)
        for b, i in enumerate(torch.randint(len(self.clips), (batch,), generator=g).tolist()):
            clip = self.clips[i]
            start = int(torch.randint(max(1, clip.shape[1] - length + 1), (1,), generator=g))
            piece = clip[:, start:start + length]
            out[b, :, :piece.shape[1]] = piece.float()
        return out


# --- the run ---------------------------------------------------------------------------------------------

def model_config(source_raw: dict, cfg: VAEConfig) -> dict:
    """`source_raw` (a model_config.json dict) with this VAE as its pretransform; pretransform.scale is dropped
    (a new VAE's latents have their own scale: `train rf --latent-scale` sets the DiT's)."""
    raw = copy.deepcopy(source_raw)
    pre = raw["model"]["pretransform"]
    pre.pop("scale", None)
    ae = pre["config"]
    for part, latent in (("encoder", 2 * cfg.latent_dim), ("decoder", cfg.latent_dim)):
        ae[part]["config"].update(channels=cfg.channels, c_mults=list(cfg.mults), strides=list(cfg.strides),
                                  latent_dim=latent)
    ae.update(latent_dim=cfg.latent_dim, downsampling_ratio=cfg.hop)
    return raw


def write_model(source, ae: Autoencoder, cfg: VAEConfig, out_dir: Path) -> Path:
    """Official layout: `source`'s T5, conditioner and DiT with `ae` as the VAE (weight norm as weight_g/_v);
    the T5 folder beside it as ../t5 when `source` is a built-in random:* model."""
    from edgegen.pipeline import Pipeline

    raw = model_config(source.raw_config, cfg)
    pipe = Pipeline(ModelConfig.from_dict(raw), source.text_encoder.t5.config, source.tokenizer, source.source)
    for name in ("text_encoder", "dit"):
        pipe.modules()[name].load_state_dict(source.modules()[name].state_dict())
    pipe.dit.transformer.rotary_pos_emb.refresh()
    pipe.encoder.load_state_dict(ae.plain_state("encoder"))
    pipe.decoder.load_state_dict(ae.plain_state("decoder"))
    pipe.save_official(Path(out_dir), raw_config=raw)
    if source.source.t5.startswith("random:"):
        loop.write_t5_folder(pipe, Path(out_dir).parent / "t5")
    return Path(out_dir)


def inverse_lr(cfg: VAEConfig):
    return lambda k: (1 - cfg.warmup ** (k + 1)) * (1 + k / cfg.inv_gamma) ** -0.5


def train_vae(*, model: str | Path, t5: str | Path | None, captions: Path, out: Path, cfg: VAEConfig, steps: int,
              resume: bool = False, distributed: bool = False, save_every: int = 500, log_every: int = 50,
              log: loop.Log | None = None) -> Path:
    """Train a fresh VAE of shape `cfg` on the clips of `captions` for `steps` steps in total; returns out/model
    (`model`'s other components with this VAE). Everything is checked before `out` is created (the VAE config
    against the family, the model, the clips); a run that fails before writing anything leaves no folder."""
    cfg.check()
    for name, value in (("steps", steps), ("save_every", save_every), ("log_every", log_every)):
        check_number(name, value, lo=1, integer=True)
    run = loop.start(distributed=distributed)
    try:
        settings = {**asdict(cfg), "model": str(model), "captions": str(captions), "world": run.world}
        state = loop.check_run_dir(out, resume=resume, kind="vae", config=settings)
        source = loop.source_pipeline(model, t5=t5)
        ModelConfig.from_dict(model_config(source.raw_config, cfg), source=f"the VAE config with {model}")
        clips = Clips.load(captions, sample_rate=source.sample_rate)
        with torch.random.fork_rng():  # the init is a function of the seed; the global RNG is untouched
            torch.manual_seed(cfg.seed)
            ae = Autoencoder(cfg.oobleck())
        ae = ae.to(run.device).train()
        opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, inverse_lr(cfg))
        ae_ddp = loop.wrap(ae, run)
        sums, counts = defaultdict(float), defaultdict(int)

        def step(i: int) -> dict:
            g = loop.step_generator(cfg.seed, run.rank, i)
            x = clips.crops(cfg.batch_size, cfg.crop, g).to(run.device)
            noise = loop.randn((cfg.batch_size, cfg.latent_dim, cfg.crop // cfg.hop), g, run.device)
            x_hat, kl = ae_ddp(x, noise)
            losses = vae_losses(x_hat, x, kl, cfg)
            losses["loss"].backward()
            numbers = {k: float(v.detach()) for k, v in losses.items()}
            numbers["grad_norm"] = loop.clip_and_step(ae.parameters(), opt, cfg.clip_grad_norm)
            sched.step()
            for key, value in numbers.items():
                sums[key] += value
                counts[key] += 1
            return numbers

        def record(done: int, last: dict) -> dict:
            """The means over the window since the last record."""
            rec = {"step": done, **{k: round(sums[k] / counts[k], 6) for k in sums}, "lr": sched.get_last_lr()[0]}
            sums.clear()
            counts.clear()
            return rec

        trainer = loop.Trainer(kind="vae", settings=settings, objects={"vae": ae, "opt": opt, "sched": sched},
                               step=step, record=record,
                               finish=lambda: write_model(source, ae, cfg, Path(out) / "model"))
        loop.fit(trainer, run=run, out=out, state=state, steps=steps, save_every=save_every, log_every=log_every,
                 log=log)
        return Path(out) / "model"
    finally:
        loop.finish(run)
