"""Conditioning: the `seconds_total` number conditioner and the text encoder artifact.

    TextEncoder(token_ids [B, 64], attention_mask [B, 64], seconds_total [B])
        -> cross_attn_cond [B, 65, C]   (64 T5 tokens zeroed at padding, then the seconds token)
           global_cond     [B, C]       (the seconds embedding again)

This is the first of the three exported artifacts. Parameter names of `NumberConditioner` follow the
official checkpoint under `conditioner.conditioners.seconds_total.`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgegen.components.t5_encoder import T5Encoder


class LearnedFourierFeatures(nn.Module):
    """u [B] -> [u, sin(2 pi u w), cos(2 pi u w)]: [B, 1 + 2 * len(w)] (u first, then sin, then cos)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u[:, None]
        freqs = u * self.weights[None, :] * 2 * math.pi  # same op order as upstream, for bit parity
        return torch.cat([u, freqs.sin(), freqs.cos()], dim=-1)


class NumberEmbedder(nn.Module):
    def __init__(self, *, features: int, dim: int = 256):
        super().__init__()
        self.embedding = nn.Sequential(LearnedFourierFeatures(dim), nn.Linear(dim + 1, features))


class NumberConditioner(nn.Module):
    """seconds [B] -> embedding [B, features]; clamped to [min_val, max_val] and normalised to [0, 1]."""

    def __init__(self, *, features: int, min_val: float, max_val: float):
        super().__init__()
        self.min_val, self.max_val = float(min_val), float(max_val)
        self.embedder = NumberEmbedder(features=features)

    def forward(self, seconds: torch.Tensor) -> torch.Tensor:
        seconds = seconds.float().clamp(self.min_val, self.max_val)
        u = (seconds - self.min_val) / (self.max_val - self.min_val)
        return self.embedder.embedding(u)


class TextEncoder(nn.Module):
    """T5 + seconds conditioner -> the DiT's cross-attention tokens and global vector.

    `proj_out` is the identity when T5's width equals the conditioning width (SAO-small: 768 = 768);
    otherwise it is the checkpoint's `conditioner.conditioners.prompt.proj_out` Linear.
    """

    def __init__(self, t5: T5Encoder, seconds: NumberConditioner, *, cond_dim: int):
        super().__init__()
        self.t5 = t5
        self.seconds_total = seconds
        d = t5.config.d_model
        self.proj_out = nn.Identity() if d == cond_dim else nn.Linear(d, cond_dim)

    def forward(self, token_ids: torch.Tensor, attention_mask: torch.Tensor, seconds_total: torch.Tensor):
        mask = attention_mask.float()[..., None]  # (B, L, 1)
        text = self.proj_out(self.t5(token_ids, attention_mask).float()) * mask  # (B, L, C)
        secs = self.seconds_total(seconds_total)  # (B, C)
        cross = torch.cat([text, secs[:, None, :]], dim=1)  # (B, L + 1, C)
        return cross, secs
