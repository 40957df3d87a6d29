"""Export forms: the same math as eager, written with ops XNNPACK delegates.

ExecuTorch 1.5's XNNPACK backend has no layer_norm, no 3-D mean, no reciprocal and no safe-softmax
SDPA: each of those falls back to portable kernels and cuts the graph into many small delegates (slower
to run, slower to lower). Modules that hold an `export_form` flag switch to these formulations when
`set_export_form(module)` is called on a copy before export; eager inference keeps the fused kernels.

    layer_norm(x, w, b, eps, row)  mean and variance as a linear with a constant 1/D row (delegated)
    rms_norm_scale(x, eps, row)    T5's rsqrt(mean(x^2) + eps), same trick
    attention(q, k, v)           softmax(q k^T / sqrt(d)) v as bmm + softmax + bmm
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def averaging_row(dim: int) -> torch.Tensor:
    """[1, dim] weights of 1/dim: `F.linear(x, row)` is the mean over the last axis as a delegated linear."""
    return torch.full((1, dim), 1.0 / dim)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               row: torch.Tensor) -> torch.Tensor:
    centred = x - F.linear(x, row)
    return centred * torch.rsqrt(F.linear(centred * centred, row) + eps) * weight + bias


def rms_norm_scale(x: torch.Tensor, eps: float, row: torch.Tensor) -> torch.Tensor:
    return torch.rsqrt(F.linear(x * x, row) + eps)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, H, N, D], k and v [B, H, M, D] -> [B, H, N, D]; 3-D bmm so no broadcast copies are needed."""
    B, H, N, D = q.shape
    M = k.shape[2]
    q3 = q.reshape(B * H, N, D) * (1.0 / math.sqrt(D))
    scores = torch.bmm(q3, k.reshape(B * H, M, D).transpose(1, 2))  # (B*H, N, M)
    return torch.bmm(torch.softmax(scores, dim=-1), v.reshape(B * H, M, D)).reshape(B, H, N, D)


def set_export_form(module: nn.Module, on: bool = True) -> nn.Module:
    """Switch every submodule with an `export_form` flag (and fold constants where a module can)."""
    for m in module.modules():
        if hasattr(m, "export_form"):
            m.export_form = on
            if on and hasattr(m, "fold"):
                m.fold()
    return module
