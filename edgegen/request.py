"""One generation's request as data, for the PyTorch reference and a bundle alike (the native runner's `Request`).

    req = GenerateRequest("a dog barking", seconds=5.0, steps=8, seed=0)
    wav = pipe.generate(req)            # Pipeline or BundlePipeline: np.float32 [2, num_samples(seconds)]

Checked in one module, in two steps: what needs no model when the request is made (`__post_init__`: steps,
cfg_scale, init_noise_level against init_audio), what needs the model or bundle when it runs (`plan`: seconds
against its maximum, the prompt against its tokenizer, injected noise and sigmas against its shapes). numpy only:
running a LiteRT bundle never loads torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from numbers import Integral

import numpy as np

from edgegen.common import check_seconds
from edgegen.errors import EdgegenError
from edgegen.init_audio import audio_to_audio_level
from edgegen.sampler import chain_noise, init_vae_noise


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class GenerateRequest:
    prompt: str
    _: KW_ONLY
    seconds: float = 10.0               # seconds_total: the audio's length and the DiT's conditioning
    steps: int | None = None            # None: the pipeline's (8 for the reference, the manifest's for a bundle)
    seed: int = 0                       # the noise when `noise` (and `vae_noise`) are not given
    noise: np.ndarray | None = None     # [steps, 64, T] chain noise instead of the seed's
    cfg_scale: float = 1.0              # classifier-free guidance (1 = none; the reference only)
    truncate_prompt: bool = False       # cut an over-long prompt instead of refusing it
    init_audio: tuple[int, np.ndarray] | None = None  # audio-to-audio: (sample_rate, [channels, n])
    init_noise_level: float = 1.0       # S in (0, 1] where sampling starts; < 1 needs init_audio
    vae_noise: np.ndarray | None = None  # [1, 64, T] the VAE bottleneck's noise instead of the seed's
    sigmas: np.ndarray | None = None    # [steps + 1] noise levels from S down to 0, instead of the schedule

    def __post_init__(self):
        if not isinstance(self.prompt, str):
            raise EdgegenError(f"the prompt must be a string, got {type(self.prompt).__name__}")
        if self.steps is not None and not (isinstance(self.steps, Integral) and not isinstance(self.steps, bool)
                                           and self.steps >= 1):
            raise EdgegenError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not math.isfinite(self.cfg_scale):
            raise EdgegenError(f"--cfg-scale {self.cfg_scale}: give a finite number (1 = no guidance)")
        audio_to_audio_level(self.init_noise_level, self.init_audio)


@dataclass(frozen=True, eq=False)
class Plan:
    """A request resolved against one model or bundle: what its sampler runs."""
    steps: int
    level: float                 # S: where sampling starts (1 = text-to-audio)
    noise: np.ndarray            # [steps, C, T] float32 chain noise
    vae_noise: np.ndarray | None  # [1, C, T] with init audio, else None
    sigmas: np.ndarray           # [steps + 1] float32, S down to 0
    tokens: int                  # the prompt's tokens (EOS included) before any truncation


def plan(request: GenerateRequest, *, tokenizer, max_seconds: float, sample_rate: int,
         latent_shape: tuple[int, int], steps: int, schedule: Callable[[int, float], np.ndarray],
         owner: str) -> Plan:
    """Check `request` against a model's (or bundle's, `owner`) facts; one EdgegenError line for the first problem.
    `steps` is the default when the request names none; `schedule(steps, S)` the noise levels when it gives no
    sigmas."""
    check_seconds(request.seconds, max_seconds=max_seconds, sample_rate=sample_rate, owner=owner)
    tokens = tokenizer.fit(request.prompt, truncate=request.truncate_prompt)  # over-long: refused unless asked
    level = audio_to_audio_level(request.init_noise_level, request.init_audio)
    steps = request.steps or steps
    channels, length = latent_shape
    noise = chain_noise(request.noise, seed=request.seed, steps=steps, channels=channels, length=length, owner=owner)
    vae = None
    if request.init_audio is not None:
        vae = init_vae_noise(request.vae_noise, seed=request.seed, steps=steps, channels=channels, length=length,
                             owner=owner)
    if request.sigmas is None:
        ts = schedule(steps, level)
    else:
        ts = np.asarray(request.sigmas, dtype=np.float32)
        if ts.shape != (steps + 1,) or not np.isfinite(ts).all() or ts[0] != np.float32(level) or ts[-1] != 0:
            raise EdgegenError(f"sigmas must be {steps + 1} finite noise levels from init_noise_level {level} "
                               f"down to 0, got {np.array2string(ts, precision=4)}")
    return Plan(steps=steps, level=level, noise=noise, vae_noise=vae, sigmas=ts, tokens=tokens)
