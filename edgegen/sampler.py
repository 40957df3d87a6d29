"""The ping-pong sampler: one implementation, shared by the PyTorch pipeline and the bundle runners.

Rectified flow: x_t = (1 - t) x0 + t eps, the network predicts v = eps - x0, so x0 = x_t - t v.
Ping-pong alternates a full denoise with a re-noise to the next level using FRESH noise:

    x = noise[0]
    for i in 0 .. steps-1:
        x0 = x - t[i] * velocity(x, t[i])
        x  = (1 - t[i+1]) * x0 + t[i+1] * noise[i+1]      (after the last step t = 0: x = x0)

The schedule is uniform in logSNR from `logsnr_max` to `logsnr_min`, t = sigmoid(-logsnr), with the ends
pinned to sigma_max (1) and 0. For 8 steps: [1, .993307, .982014, .952574, .880797, .731059, .5, .268941, 0].
All arithmetic is float32 element-wise, in the order written, so the C++ runner reproduces it bit for bit.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from edgegen.errors import EdgegenError
from edgegen.noise import gaussian_noise

LOGSNR_MAX, LOGSNR_MIN = -6.0, 2.0


def schedule(steps: int, *, logsnr_max: float = LOGSNR_MAX, logsnr_min: float = LOGSNR_MIN,
             sigma_max: float = 1.0) -> np.ndarray:
    """float32 [steps + 1] noise levels, from sigma_max down to 0 (computed in float64)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    logsnr = np.linspace(logsnr_max, logsnr_min, steps + 1)
    t = 1.0 / (1.0 + np.exp(logsnr))
    t[0], t[-1] = sigma_max, 0.0
    return t.astype(np.float32)


def make_noise(*, seed: int, steps: int, channels: int, length: int) -> torch.Tensor:
    """The chain's noise [steps, channels, length]: noise[0] starts it, noise[k] re-noises after step k-1."""
    return torch.from_numpy(gaussian_noise(seed, (steps, channels, length)))


def chain_noise(noise, *, seed: int, steps: int, channels: int, length: int, owner: str = "this model") -> torch.Tensor:
    """The chain's noise: `noise` (injected, any array) checked against [steps, channels, length], else
    `make_noise(seed=...)`. A wrong shape is one EdgegenError naming what `owner` needs."""
    shape = (steps, channels, length)
    if noise is None:
        return make_noise(seed=seed, steps=steps, channels=channels, length=length)
    noise = torch.as_tensor(noise, dtype=torch.float32)
    if tuple(noise.shape) != shape:
        raise EdgegenError(f"noise has shape {list(noise.shape)}; {owner} needs {list(shape)} [steps, 64, T]")
    return noise


Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, C, T], t [B]) -> v [B, C, T]


def pingpong(velocity: Velocity, noise: torch.Tensor, ts: np.ndarray,
             on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run the chain; `noise` is [steps, C, T] (batch 1) or [steps, B, C, T]. Returns x0 [B, C, T]."""
    steps = len(ts) - 1
    if noise.shape[0] != steps:
        raise ValueError(f"noise has {noise.shape[0]} slices for {steps} steps (expected [steps, C, T])")
    noise = noise.float() if noise.dim() == 4 else noise.float()[:, None]
    x = noise[0]
    batch = x.shape[0]
    for i in range(steps):
        t = torch.full((batch,), float(ts[i]), dtype=torch.float32)
        denoised = x - t[0] * velocity(x, t)
        t_next = torch.tensor(ts[i + 1], dtype=torch.float32)
        x = denoised if i + 1 == steps else (1 - t_next) * denoised + t_next * noise[i + 1]
        if on_step is not None:
            on_step(i, x)
    return x
