"""Fixture builders shared by the tests: official-layout checkpoints and Hugging Face T5 folders on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import edgegen
from edgegen.train.loop import write_t5_folder  # noqa: F401  (the one implementation, re-exported)


def rel_err(ref, got) -> float:
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    return float(np.linalg.norm(ref - got) / max(np.linalg.norm(ref), 1e-30))


def write_official(pipe: edgegen.Pipeline, out: Path) -> Path:
    pipe.save_official(out, raw_config=pipe.raw_config)
    return out


def perturb_(module: torch.nn.Module, scale: float, seed: int = 123) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std().clamp(min=1e-3))
