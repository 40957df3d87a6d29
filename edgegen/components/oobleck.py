"""Oobleck VAE: decoder (the third exported artifact), encoder and the VAE bottleneck.

    OobleckDecoder(latents [B, 64, T]) -> audio [B, 2, T * prod(strides)]     (no tanh)
    OobleckEncoder(audio [B, 2, N])   -> [B, 2 * 64, N / prod(strides)]      (mean | scale)
    vae_bottleneck(encoded, noise=None) -> latents [B, 64, T]                 (the mean unless noise is given)

Checkpoint convs are weight-normed (`weight_g`, `weight_v`); these modules hold plain `weight`s and the
loader folds g * v / ||v|| once (see `checkpoint.py`). Module indices mirror upstream's Sequentials, so
names line up with `pretransform.model.{encoder,decoder}.`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class OobleckConfig:
    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    latent_dim: int = 64  # decoder input; the encoder emits 2 * latent_dim (mean, scale)
    audio_channels: int = 2

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


OOBLECK_CONFIGS = {
    "sao-small": OobleckConfig(),
    "tiny": OobleckConfig(channels=8),
}


class SnakeBeta(nn.Module):
    """x + 1 / (exp(beta) + 1e-9) * sin(exp(alpha) * x)^2, per-channel log-scale alpha and beta."""

    export_form = False

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def fold(self) -> None:
        """Export form: precompute exp(alpha) and 1 / (exp(beta) + 1e-9) as [1, C, 1] constants."""
        with torch.no_grad():
            self.register_buffer("alpha_exp", self.alpha.exp()[None, :, None].clone(), persistent=False)
            self.register_buffer("inv_beta", (1.0 / (self.beta.exp() + 1e-9))[None, :, None].clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, C, N)
        if self.export_form:
            return x + self.inv_beta * torch.sin(x * self.alpha_exp).pow(2)
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels),
            nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class DecoderBlock(nn.Module):
    """Snake -> ConvTranspose1d (k = 2s, upsample x s) -> 3 residual units (dilation 1, 3, 9)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(c_in),
            nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            ResidualUnit(c_out, 1), ResidualUnit(c_out, 3), ResidualUnit(c_out, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class EncoderBlock(nn.Module):
    """3 residual units (dilation 1, 3, 9) -> Snake -> strided Conv1d (k = 2s, downsample / s)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            ResidualUnit(c_in, 1), ResidualUnit(c_in, 3), ResidualUnit(c_in, 9),
            SnakeBeta(c_in),
            nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckDecoder(nn.Module):
    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        self.config = cfg
        ch = [cfg.channels * m for m in (1, *cfg.c_mults)]
        blocks = [DecoderBlock(ch[i], ch[i - 1], cfg.strides[i - 1]) for i in range(len(ch) - 1, 0, -1)]
        self.layers = nn.Sequential(
            nn.Conv1d(cfg.latent_dim, ch[-1], 7, padding=3),
            *blocks,
            SnakeBeta(ch[0]),
            nn.Conv1d(ch[0], cfg.audio_channels, 7, padding=3, bias=False),
        )
        self.scale = 1.0  # pretransform latent scale ("scale" in model_config.json, 1 for SAO-small)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.layers(latents * self.scale if self.scale != 1.0 else latents)


class OobleckEncoder(nn.Module):
    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        self.config = cfg
        ch = [cfg.channels * m for m in (1, *cfg.c_mults)]
        blocks = [EncoderBlock(ch[i], ch[i + 1], cfg.strides[i]) for i in range(len(ch) - 1)]
        self.layers = nn.Sequential(
            nn.Conv1d(cfg.audio_channels, ch[0], 7, padding=3),
            *blocks,
            SnakeBeta(ch[-1]),
            nn.Conv1d(ch[-1], 2 * cfg.latent_dim, 3, padding=1),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.layers(audio)


def vae_bottleneck(encoded: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Latents from the encoder output: the mean, or mean + (softplus(scale) + 1e-4) * noise."""
    mean, scale = encoded.chunk(2, dim=1)
    if noise is None:
        return mean
    return mean + (F.softplus(scale) + 1e-4) * noise


def weight_normed_convs(module: nn.Module) -> list[str]:
    """Names of the conv weights that the official checkpoint stores as weight_g / weight_v."""
    return [f"{name}.weight" for name, m in module.named_modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
