"""The ping-pong sampler: one implementation, shared by the PyTorch pipeline and the bundle runners.

Rectified flow: x_t = (1 - t) x0 + t eps, the network predicts v = eps - x0, so x0 = x_t - t v.
Ping-pong alternates a full denoise with a re-noise to the next level using FRESH noise:

    x = noise[0]
    for i in 0 .. steps-1:
        x0 = x - t[i] * velocity(x, t[i])
        x  = (1 - t[i+1]) * x0 + t[i+1] * noise[i+1]      (after the last step t = 0: x = x0)

The schedule is uniform in logSNR from `logsnr_max` to `logsnr_min`, t = sigmoid(-logsnr), with the ends
pinned to 1 and 0. For 8 steps: [1, .993307, .982014, .952574, .880797, .731059, .5, .268941, 0].
Audio-to-audio starts from x = (1 - S) * init_latents + S * noise[0] on the schedule truncated at S (`schedule`).
All arithmetic is float32 element-wise, in the order written, so the C++ runner reproduces it bit for bit.

The chain runs on numpy arrays or torch tensors alike (the type of its noise): a bundle's runtime path stays numpy
and never loads torch; the PyTorch reference passes tensors. Chain and VAE noise come as numpy float32.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edgegen.errors import EdgegenError
from edgegen.noise import gaussian_noise

LOGSNR_MAX, LOGSNR_MIN = -6.0, 2.0


def schedule(steps: int, *, logsnr_max: float = LOGSNR_MAX, logsnr_min: float = LOGSNR_MIN,
             init_noise_level: float = 1.0) -> np.ndarray:
    """float32 [steps + 1] noise levels, from `init_noise_level` S down to 0 (computed in float64).

    S < 1 (audio-to-audio) starts the logSNR walk at the level S itself, as upstream stable-audio-tools 0.0.19's
    `sample_rf` does (the release SAO-small shipped with): logSNR runs from log((1 - S) / S + 1e-6) to logsnr_min in
    `steps` equal steps, so t falls monotonically from S. (0.0.20's `build_schedule` instead maps linspace(S, 0)
    through its logSNR shift and then overwrites t[0] with S, which for S = 0.5 gives 0.5, 0.82, 0.73, ...: the
    first re-noise goes above the starting level. edgegen keeps 0.0.19's rule, like its text-to-audio schedule.)
    S = 1 is the text-to-audio schedule."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = init_noise_level
    start = logsnr_max if s >= 1.0 else math.log((1 - s) / s + 1e-6)
    logsnr = np.linspace(start, logsnr_min, steps + 1)
    t = 1.0 / (1.0 + np.exp(logsnr))
    t[0], t[-1] = init_noise_level, 0.0
    return t.astype(np.float32)


def make_noise(*, seed: int, steps: int, channels: int, length: int):
    """The chain's noise [steps, channels, length] as a torch tensor (the reference's): noise[0] starts it, noise[k]
    re-noises after step k-1. `gaussian_noise(seed, (steps, channels, length))` is the same numbers in numpy."""
    import torch

    return torch.from_numpy(gaussian_noise(seed, (steps, channels, length)))


def _float32(noise) -> np.ndarray:
    return (noise.detach().cpu().numpy() if hasattr(noise, "detach") else np.asarray(noise)).astype(np.float32)


def init_vae_noise(noise, *, seed: int, steps: int, channels: int, length: int,
                   owner: str = "this model") -> np.ndarray:
    """The VAE bottleneck's sampling noise [1, channels, length] for audio-to-audio: `noise` (injected) checked,
    else slice `steps` of gaussian_noise(seed, (steps + 1, channels, length)), so the chain noise (its first `steps`
    slices) is the same numbers as in text-to-audio and a runtime draws both from one seed."""
    shape = (1, channels, length)
    if noise is None:
        return gaussian_noise(seed, (steps + 1, channels, length))[steps:]
    noise = _float32(noise)
    if tuple(noise.shape) != shape:
        raise EdgegenError(f"VAE noise has shape {list(noise.shape)}; {owner} needs {list(shape)} [1, 64, T]")
    return noise


def start_from_init(noise, init, level: float):
    """The chain noise with its first slice replaced by (1 - S) * init + S * noise[0] (audio-to-audio at S =
    `level`; init [1, C, T]), as upstream mixes init latents and noise for rectified flow. A copy; float32, this
    order (the native runner repeats it)."""
    noise = noise.clone() if hasattr(noise, "clone") else np.array(noise, dtype=np.float32)
    noise[0] = _like(init, noise)[0] * (1 - level) + noise[0] * level
    return noise


def chain_noise(noise, *, seed: int, steps: int, channels: int, length: int, owner: str = "this model") -> np.ndarray:
    """The chain's noise: `noise` (injected, any array) checked against [steps, channels, length], else
    `make_noise(seed=...)`. A wrong shape is one EdgegenError naming what `owner` needs."""
    shape = (steps, channels, length)
    if noise is None:
        return gaussian_noise(seed, shape)
    noise = _float32(noise)
    if tuple(noise.shape) != shape:
        raise EdgegenError(f"noise has shape {list(noise.shape)}; {owner} needs {list(shape)} [steps, 64, T]")
    return noise


def _like(a, ref):
    """`a` as the array type of `ref`: a torch tensor when `ref` is one (torch is loaded then), else numpy."""
    if hasattr(ref, "detach"):
        if hasattr(a, "detach"):
            return a
        import torch

        return torch.as_tensor(np.asarray(a))
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


Velocity = Callable  # (x [B, C, T], t [B]) -> v [B, C, T]; numpy or torch, like the chain's noise


def pingpong(velocity: Velocity, noise, ts: np.ndarray, on_step: Callable | None = None):
    """Run the chain; `noise` is [steps, C, T] (batch 1) or [steps, B, C, T], a numpy array or a torch tensor.
    Returns x0 [B, C, T] of the same type; `velocity` gets x and t [B] of that type (its output is converted)."""
    steps = len(ts) - 1
    if noise.shape[0] != steps:
        raise ValueError(f"noise has {noise.shape[0]} slices for {steps} steps (expected [steps, C, T])")
    if hasattr(noise, "detach"):
        import torch

        noise = noise.float() if noise.dim() == 4 else noise.float()[:, None]
        full = lambda n, v: torch.full((n,), v, dtype=torch.float32)  # noqa: E731
        scalar = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    else:
        noise = np.asarray(noise, dtype=np.float32)
        noise = noise if noise.ndim == 4 else noise[:, None]
        full = lambda n, v: np.full((n,), v, dtype=np.float32)  # noqa: E731
        scalar = np.float32
    x = noise[0]
    batch = x.shape[0]
    for i in range(steps):
        t = full(batch, float(ts[i]))
        denoised = x - t[0] * _like(velocity(x, t), x)
        t_next = scalar(ts[i + 1])
        x = denoised if i + 1 == steps else (1 - t_next) * denoised + t_next * noise[i + 1]
        if on_step is not None:
            on_step(i, x)
    return x
