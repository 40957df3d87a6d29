"""T5 encoder (t5-base family), export-friendly: static shapes, relative-position buckets as a constant.

    T5Encoder(config)(token_ids [B, L] int, attention_mask [B, L] int) -> hidden [B, L, d_model]

The output is `last_hidden_state` as in Hugging Face's `T5EncoderModel` (padded positions are NOT zeroed
here; the text encoder multiplies by the mask). Parameter names follow the Hugging Face checkpoint
(`shared.weight`, `encoder.block.{i}.layer.0.SelfAttention.q.weight`, ...), so a `t5-base` folder loads
with a prefix strip and nothing else. Decoder and LM-head tensors of a full T5 checkpoint are ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgegen.components import export_form as xf
from edgegen.errors import EdgegenError


@dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"  # "relu" (t5-base) or "gated-gelu" (t5 v1.1 / flan)

    @classmethod
    def from_json(cls, path: Path) -> "T5Config":
        """Read the fields edgegen needs from a Hugging Face `config.json`."""
        raw = json.loads(Path(path).read_text())
        if raw.get("feed_forward_proj", "relu") not in ("relu", "gated-gelu"):
            raise EdgegenError(f"{path}: feed_forward_proj={raw['feed_forward_proj']!r} is not supported "
                               "(edgegen supports 'relu' and 'gated-gelu' T5 encoders)")
        names = [f for f in cls.__dataclass_fields__ if f in raw]
        return cls(**{name: raw[name] for name in names})


T5_CONFIGS = {
    # google-t5/t5-base, as its config.json says
    "t5-base": T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
    "tiny": T5Config(vocab_size=1024, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4),
}


def relative_position_buckets(length: int, *, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 bucket index for every (query, key) pair: [length, length] int64."""
    pos = torch.arange(length)
    rel = pos[None, :] - pos[:, None]  # key - query
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    large = max_exact + (
        torch.log(rel.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    ).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < max_exact, rel, large)


class T5LayerNorm(nn.Module):
    """RMS norm without mean subtraction or bias, variance in fp32."""

    export_form = False

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def fold(self) -> None:
        self.register_buffer("avg_row", xf.averaging_row(self.weight.shape[0]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.export_form:
            return self.weight * (x * xf.rms_norm_scale(x, self.eps, self.avg_row))
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps)).to(self.weight.dtype)


class T5Attention(nn.Module):
    def __init__(self, cfg: T5Config, *, has_relative_bias: bool):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.relative_attention_num_buckets, cfg.num_heads)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = (proj(x).view(B, L, self.heads, self.d_kv).transpose(1, 2) for proj in (self.q, self.k, self.v))
        scores = q @ k.transpose(-1, -2) + bias  # (B, H, L, L); T5 does not scale by 1/sqrt(d)
        attn = torch.softmax(scores.float(), dim=-1).type_as(scores)
        out = (attn @ v).transpose(1, 2).reshape(B, L, self.heads * self.d_kv)
        return self.o(out)


class T5FeedForward(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.gated = cfg.feed_forward_proj == "gated-gelu"
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))
        return self.wo(F.relu(self.wi(x)))


class _SelfAttentionLayer(nn.Module):
    def __init__(self, cfg: T5Config, *, has_relative_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_relative_bias=has_relative_bias)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x + self.SelfAttention(self.layer_norm(x), bias)


class _FeedForwardLayer(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.DenseReluDense = T5FeedForward(cfg)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, *, has_relative_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([_SelfAttentionLayer(cfg, has_relative_bias=has_relative_bias),
                                    _FeedForwardLayer(cfg)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.layer[1](self.layer[0](x, bias))


class _Stack(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.block = nn.ModuleList([T5Block(cfg, has_relative_bias=i == 0) for i in range(cfg.num_layers)])
        self.final_layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)


class T5Encoder(nn.Module):
    """T5 encoder stack; `max_length` fixes the bucket table (the text encoder always feeds 64 tokens)."""

    def __init__(self, cfg: T5Config, *, max_length: int = 64):
        super().__init__()
        self.config = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = _Stack(cfg)
        buckets = relative_position_buckets(max_length, num_buckets=cfg.relative_attention_num_buckets,
                                            max_distance=cfg.relative_attention_max_distance)
        self.register_buffer("buckets", buckets, persistent=False)  # (L, L) constant

    def forward(self, token_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.shared(token_ids.long())  # (B, L, D)
        L = token_ids.shape[1]
        rel = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
        bias = rel(self.buckets[:L, :L]).permute(2, 0, 1).unsqueeze(0)  # (1, H, L, L)
        keep = attention_mask.to(x.dtype)[:, None, None, :]  # (B, 1, 1, L)
        bias = bias + (1.0 - keep) * torch.finfo(x.dtype).min
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)

    # Names in a Hugging Face T5 checkpoint that an encoder does not use.
    IGNORED_PREFIXES = ("decoder.", "lm_head.")

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        """Load a Hugging Face T5 (encoder-only or full) state dict strictly; errors name every bad key."""
        from edgegen.checkpoint import strict_assign  # local import: checkpoint imports the components

        state = {k: v for k, v in state.items() if not k.startswith(self.IGNORED_PREFIXES)}
        if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
            state["shared.weight"] = state["encoder.embed_tokens.weight"]
        state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight
        strict_assign(self, state, source=source)
