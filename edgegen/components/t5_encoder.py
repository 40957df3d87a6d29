"""T5 encoder (t5-base family), export-friendly: static shapes, relative-position buckets as a constant.

    T5Encoder(config)(token_ids [B, L] int, attention_mask [B, L] int) -> hidden [B, L, d_model]

The output is `last_hidden_state` as in Hugging Face's `T5EncoderModel` (padded positions are NOT zeroed
here; the text encoder multiplies by the mask). Parameter names follow the Hugging Face checkpoint
(`shared.weight`, `encoder.block.{i}.layer.0.SelfAttention.q.weight`, ...), so a `t5-base` folder loads
with a prefix strip and nothing else. Decoder and LM-head tensors of a full T5 checkpoint are ignored.

Precision (`T5_PRECISIONS`): upstream's `T5Conditioner` loads T5 with `.to(torch.float16)`, so SAO-small's DiT was
trained on, and upstream generates from, conditioning made with fp16-rounded T5 weights. `round_weights_("fp16")`
(the default everywhere) rounds every weight through float16 and keeps computing in float32; "fp32" keeps the
weights as stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgegen.checkpoint import strict_assign
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
        """Read and validate the fields edgegen needs from a Hugging Face `config.json`; every problem is one
        `EdgegenError` line naming the file, the field, its value and what is allowed."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise EdgegenError(f"{path} cannot be read ({type(exc).__name__}: {exc}); "
                               "copy the T5 folder again") from None
        except json.JSONDecodeError as exc:
            raise EdgegenError(f"{path} is not valid JSON ({exc}); copy the T5 folder's config.json again") from None
        if not isinstance(raw, dict):
            raise EdgegenError(f"{path}: expected a JSON object of T5 settings, found {type(raw).__name__}")
        values = {}
        required = [n for n, f in cls.__dataclass_fields__.items() if f.default is MISSING]
        for name in cls.__dataclass_fields__:
            if name not in raw:
                if name in required:
                    raise EdgegenError(f"{path}: field {name!r} is missing; a T5 config.json needs "
                                       + ", ".join(required))
                continue
            values[name] = _check_field(path, name, raw[name])
        cfg = cls(**values)
        exact = cfg.relative_attention_num_buckets // 4  # buckets below this distance are exact
        if cfg.relative_attention_max_distance <= exact:
            raise EdgegenError(f"{path}: relative_attention_max_distance={cfg.relative_attention_max_distance} is not "
                               f"allowed (an integer > relative_attention_num_buckets // 4 = {exact})")
        return cfg


_FEED_FORWARD = ("relu", "gated-gelu")


def _check_field(path: Path, name: str, value):
    """One `config.json` value, checked: positive integers, a positive epsilon, a supported feed-forward."""
    if name == "feed_forward_proj":
        if value not in _FEED_FORWARD:
            raise EdgegenError(f"{path}: feed_forward_proj={value!r} is not supported "
                               f"(edgegen supports {' and '.join(map(repr, _FEED_FORWARD))} T5 encoders)")
        return value
    if name == "layer_norm_epsilon":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
        if not ok:
            raise EdgegenError(f"{path}: layer_norm_epsilon={json.dumps(value)} is not allowed "
                               "(a number between 0 and 1, e.g. 1e-06)")
        return float(value)
    low = 4 if name == "relative_attention_num_buckets" else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise EdgegenError(f"{path}: {name}={json.dumps(value)} is not allowed (an integer >= {low})")
    return value


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
        state = {k: v for k, v in state.items() if not k.startswith(self.IGNORED_PREFIXES)}
        if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
            state["shared.weight"] = state["encoder.embed_tokens.weight"]
        state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight
        strict_assign(self, state, source=source)

    def round_weights_(self, precision: str, *, source: str) -> None:
        """Apply the T5 precision to the loaded weights in place (see the module docstring). The compute stays
        float32 either way; "fp16" rounds each floating-point tensor through float16, as upstream's cast does."""
        check_t5_precision(precision)
        if precision == "fp32":
            return
        with torch.no_grad():
            for name, t in self.state_dict(keep_vars=True).items():
                if not t.is_floating_point():
                    continue
                rounded = t.to(torch.float16)
                if not bool(torch.isfinite(rounded).all()):
                    top = float(t.abs().max())
                    raise EdgegenError(f"{source}: T5 tensor {name} has values beyond float16's range (max |x| = "
                                       f"{top:.4g} > 65504), so upstream's fp16 cast would make it inf; "
                                       "load it with --t5-precision fp32")
                t.copy_(rounded.to(t.dtype))


T5_PRECISIONS = ("fp16", "fp32")


def check_t5_precision(precision: str) -> None:
    if precision not in T5_PRECISIONS:
        raise EdgegenError(f"T5 precision {precision!r} is not supported; choose {' or '.join(T5_PRECISIONS)} "
                           "(fp16: weights rounded to float16 as upstream loads them, the default; fp32: as stored)")
