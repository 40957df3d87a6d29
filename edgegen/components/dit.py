"""Diffusion transformer (stable-audio-tools `DiffusionTransformer`, SAO-small settings), one sampler step.

    DiT(x [B, 64, T], t [B], cross_attn_cond [B, 65, Cc], global_cond [B, Cg]) -> v [B, 64, T]

`v` is the rectified-flow velocity (noise - x0), so the x0 estimate is x - t * v. The global vector
(seconds embedding + timestep embedding) is prepended as one token at RoPE position 0; latent i sits at
position i + 1. Parameter names equal the official checkpoint's under `model.model.`.

Export notes: no data-dependent branching, no randomness; the rotary cos/sin tables are buffers computed
once for `seq_len` tokens (the prepended token plus the latents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgegen.components import export_form as xf


@dataclass(frozen=True)
class DiTConfig:
    io_channels: int = 64
    embed_dim: int = 1024
    depth: int = 16
    num_heads: int = 8
    cond_token_dim: int = 768
    global_cond_dim: int = 768
    latent_length: int = 256  # fixes the rotary table; other lengths still work, computed on the fly

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def rotary_dim(self) -> int:
        return max(self.head_dim // 2, 32)  # upstream: RotaryEmbedding(max(dim_heads // 2, 32))


class LayerNorm(nn.Module):
    """LayerNorm with a learned gamma and a stored all-zero beta buffer (upstream's bias-free LayerNorm)."""

    export_form = False

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def fold(self) -> None:
        self.register_buffer("avg_row", xf.averaging_row(self.gamma.shape[0]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.export_form:
            return xf.layer_norm(x, self.gamma, self.beta, 1e-5, self.avg_row)
        return F.layer_norm(x, x.shape[-1:], weight=self.gamma, bias=self.beta)


class QKNorm(nn.LayerNorm):
    """Per-head affine LayerNorm (eps 1e-6) on queries and keys."""

    export_form = False

    def __init__(self, dim: int):
        super().__init__(dim, eps=1e-6)

    def fold(self) -> None:
        self.register_buffer("avg_row", xf.averaging_row(self.weight.shape[0]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.export_form:
            return xf.layer_norm(x, self.weight, self.bias, self.eps, self.avg_row)
        return super().forward(x)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `cos.shape[-1]` dims of x [B, H, N, D] (NeoX half split); the rest pass through."""
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    return torch.cat([rot * cos + rotate_half(rot) * sin, rest], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with per-head QK LayerNorm; self-attention when `context` is None."""

    export_form = False

    def __init__(self, dim: int, *, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        if context_dim is None:
            self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        else:
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(context_dim, dim * 2, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.q_norm = QKNorm(self.head_dim)
        self.k_norm = QKNorm(self.head_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        return x.view(B, N, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

    def forward(self, x, *, context=None, rope=None):
        d = self.heads * self.head_dim
        if context is None:
            qkv = self.to_qkv(x)
            q, k, v = (self._split(qkv[..., i * d:(i + 1) * d]) for i in range(3))  # slices, not chunk: delegable
        else:
            q = self._split(self.to_q(x))
            kv = self.to_kv(context)
            k, v = self._split(kv[..., :d]), self._split(kv[..., d:])
        q, k = self.q_norm(q), self.k_norm(k)  # QK-norm before RoPE
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.export_form:
            out = xf.attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, Dh); cross-attention is unmasked
        B, H, N, Dh = out.shape
        return self.to_out(out.transpose(1, 2).reshape(B, N, H * Dh))


class GLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        d = h.shape[-1] // 2
        return h[..., :d] * F.silu(h[..., d:])  # value first, then gate


class FeedForward(nn.Module):
    """SwiGLU, mult 4; indices match upstream's Sequential(GLU, Identity, Linear, Identity)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.ff = nn.Sequential(GLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, *, heads: int, context_dim: int):
        super().__init__()
        self.pre_norm = LayerNorm(dim)
        self.self_attn = Attention(dim, heads=heads)
        self.cross_attend_norm = LayerNorm(dim)
        self.cross_attn = Attention(dim, heads=heads, context_dim=context_dim)
        self.ff_norm = LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, *, context, rope):
        x = x + self.self_attn(self.pre_norm(x), rope=rope)
        x = x + self.cross_attn(self.cross_attend_norm(x), context=context)
        return x + self.ff(self.ff_norm(x))


class ContinuousTransformer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.project_in = nn.Linear(cfg.io_channels, d, bias=False)
        self.project_out = nn.Linear(d, cfg.io_channels, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(cfg.rotary_dim, seq_len=cfg.latent_length + 1)
        self.layers = nn.ModuleList(
            [TransformerBlock(d, heads=cfg.num_heads, context_dim=d) for _ in range(cfg.depth)])


class RotaryEmbedding(nn.Module):
    """inv_freq is a checkpoint buffer; cos/sin tables for `seq_len` positions are derived constants."""

    def __init__(self, dim: int, *, seq_len: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))
        self.seq_len = seq_len
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)
        self.refresh()

    def tables(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = torch.arange(n, dtype=torch.float32)[:, None] * self.inv_freq.float()[None, :]
        freqs = torch.cat([freqs, freqs], dim=-1)  # (n, rotary_dim)
        return freqs.cos(), freqs.sin()

    def refresh(self) -> None:
        """Recompute the constant tables; call after `inv_freq` is loaded from a checkpoint."""
        self.cos, self.sin = self.tables(self.seq_len)

    def forward(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n == self.seq_len:
            return self.cos, self.sin
        return self.tables(n)  # a shape-determined branch: static under export


class FourierFeatures(nn.Module):
    """t [B, 1] -> [cos(2 pi t W^T), sin(2 pi t W^T)]: [B, out] (cos first)."""

    def __init__(self, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features // 2, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = F.linear(2 * math.pi * t, self.weight)  # = (2 pi t) @ W^T; the inner dim is 1, so exact
        return torch.cat([f.cos(), f.sin()], dim=-1)


def _mlp(d_in: int, d: int, *, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d, bias=bias), nn.SiLU(), nn.Linear(d, d, bias=bias))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.config = cfg
        d, c = cfg.embed_dim, cfg.io_channels
        self.timestep_features = FourierFeatures(256)
        self.to_timestep_embed = _mlp(256, d, bias=True)
        self.to_cond_embed = _mlp(cfg.cond_token_dim, d, bias=False)
        self.to_global_embed = _mlp(cfg.global_cond_dim, d, bias=False)
        self.transformer = ContinuousTransformer(cfg)
        self.preprocess_conv = nn.Conv1d(c, c, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(c, c, 1, bias=False)

    def hidden_states(self, x, t, cross_attn_cond, global_cond, *, exit_layer: int | None = None):
        """Transformer states [B, 1 + T, D] (prepended token first), after block `exit_layer` if given."""
        context = self.to_cond_embed(cross_attn_cond)  # (B, 65, D)
        g = self.to_global_embed(global_cond) + self.to_timestep_embed(self.timestep_features(t[:, None]))
        x = (self.preprocess_conv(x) + x).transpose(1, 2)  # (B, T, C)
        tr = self.transformer
        h = torch.cat([g[:, None, :], tr.project_in(x)], dim=1)  # (B, 1 + T, D)
        rope = tr.rotary_pos_emb(h.shape[1])
        for i, block in enumerate(tr.layers):
            h = block(h, context=context, rope=rope)
            if i == exit_layer:
                break
        return h

    def forward(self, x, t, cross_attn_cond, global_cond):
        h = self.hidden_states(x, t, cross_attn_cond, global_cond)
        out = self.transformer.project_out(h).transpose(1, 2)[:, :, 1:]  # (B, C, T), prepended token dropped
        return self.postprocess_conv(out) + out
