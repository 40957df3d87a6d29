"""Fixture builders shared by the tests: official-layout checkpoints and Hugging Face T5 folders on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

import edgegen
from edgegen.pipeline import ASSETS


def rel_err(ref, got) -> float:
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    return float(np.linalg.norm(ref - got) / max(np.linalg.norm(ref), 1e-30))


def write_t5_folder(pipe: edgegen.Pipeline, out: Path) -> Path:
    """The pipeline's T5 as a Hugging Face folder: config.json, model.safetensors, spiece.model."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    cfg = pipe.text_encoder.t5.config
    hf = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": cfg.vocab_size,
          "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff, "num_layers": cfg.num_layers,
          "num_heads": cfg.num_heads, "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
          "relative_attention_max_distance": cfg.relative_attention_max_distance,
          "layer_norm_epsilon": cfg.layer_norm_epsilon, "feed_forward_proj": cfg.feed_forward_proj,
          "dropout_rate": 0.0, "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1}
    (out / "config.json").write_text(json.dumps(hf, indent=2))
    state = {k: v.contiguous().clone() for k, v in pipe.text_encoder.t5.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    shutil.copy(ASSETS / "spiece.model", out / "spiece.model")
    return out


def write_official(pipe: edgegen.Pipeline, out: Path) -> Path:
    pipe.save_official(out, raw_config=pipe.raw_config)
    return out


def perturb_(module: torch.nn.Module, scale: float, seed: int = 123) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std().clamp(min=1e-3))
