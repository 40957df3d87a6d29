"""Built-in models that need no download: `random:tiny` (tests, < 1 s) and `random:sao-small` (full size).

Each preset is an upstream-schema `model_config.json` dict plus a T5 config, built with seeded random
weights that are random in EVERY tensor and well scaled. Upstream zero-initialises output projections;
exporters would then fold whole branches away and sizes and timings would lie, so nothing here is zero
except the LayerNorm `beta` buffers, which are zero in every real checkpoint too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math

import torch
from torch import nn

from edgegen.components.oobleck import OOBLECK_CONFIGS
from edgegen.components.t5_encoder import T5_CONFIGS, T5Attention, T5Config, T5LayerNorm

_SAO_SMALL = {
    "model_type": "diffusion_cond",
    "sample_size": 524288,
    "sample_rate": 44100,
    "audio_channels": 2,
    "model": {
        "pretransform": {
            "type": "autoencoder", "iterate_batch": False, "model_half": True,
            "config": {
                "encoder": {"type": "oobleck", "requires_grad": False,
                            "config": {"in_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16],
                                       "strides": [2, 4, 4, 8, 8], "latent_dim": 128, "use_snake": True}},
                "decoder": {"type": "oobleck",
                            "config": {"out_channels": 2, "channels": 128, "c_mults": [1, 2, 4, 8, 16],
                                       "strides": [2, 4, 4, 8, 8], "latent_dim": 64, "use_snake": True,
                                       "final_tanh": False}},
                "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 2,
            },
        },
        "conditioning": {
            "configs": [{"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 64}},
                        {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}}],
            "cond_dim": 768,
        },
        "diffusion": {
            "cross_attention_cond_ids": ["prompt", "seconds_total"], "global_cond_ids": ["seconds_total"],
            "diffusion_objective": "rf_denoiser", "type": "dit",
            "config": {"io_channels": 64, "embed_dim": 1024, "depth": 16, "num_heads": 8, "cond_token_dim": 768,
                       "global_cond_dim": 768, "transformer_type": "continuous_transformer",
                       "attn_kwargs": {"qk_norm": "ln"}},
        },
        "io_channels": 64,
    },
}


def _tiny() -> dict:
    cfg = copy.deepcopy(_SAO_SMALL)
    cfg["sample_size"] = 2048 * 16  # 16 latents, 0.74 s
    ae = cfg["model"]["pretransform"]["config"]
    vae = OOBLECK_CONFIGS["tiny"]  # two blocks instead of five, the same 2048-sample hop (see its comment there)
    for part in ("encoder", "decoder"):
        ae[part]["config"].update(channels=vae.channels, c_mults=list(vae.c_mults), strides=list(vae.strides))
    cfg["model"]["conditioning"]["cond_dim"] = 32
    cfg["model"]["diffusion"]["config"].update(embed_dim=128, depth=2, num_heads=2, cond_token_dim=32,
                                                global_cond_dim=32)
    return cfg


def _tiny_long() -> dict:
    cfg = _tiny()
    cfg["sample_size"] = 2048 * 64  # 64 latents, 2.97 s: long enough to stream (window > 2 x receptive field 10)
    return cfg


# The revision of what `randomize_` and `condition_decoder_` make of a seed. Bump it whenever either changes the
# weights, so bundles exported from the old ones no longer pass for the same model (their manifest's
# checkpoint_sha256 says `random-seed-S-rN`): parity then warns and the benchmark suite re-exports them.
# 2: conditioned decoders (2026-11-30).
RANDOM_INIT_REVISION = 2


def random_checkpoint_id(seed: int = 0) -> str:
    """What a `random:*` model's manifests record as its checkpoint_sha256 (it has no file to hash)."""
    return f"random-seed-{seed}-r{RANDOM_INIT_REVISION}"


def random_config_sha256(name: str) -> str:
    """What a `random:NAME` model's manifests record as its config_sha256: a digest of its config dict, which moves
    when the preset does (random:tiny's VAE went from five blocks to two on 2026-12-07)."""
    return hashlib.sha256(json.dumps(PRESETS[name][0], sort_keys=True).encode()).hexdigest()


# name -> (model_config.json dict, T5 config)
PRESETS: dict[str, tuple[dict, T5Config]] = {
    "sao-small": (_SAO_SMALL, T5_CONFIGS["t5-base"]),
    "tiny": (_tiny(), T5_CONFIGS["tiny"]),
    "tiny-long": (_tiny_long(), T5_CONFIGS["tiny"]),
}


@torch.no_grad()
def randomize_(module: nn.Module, *, seed: int) -> None:
    """Fill every parameter with seeded, variance-preserving random values (in place)."""
    g = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=g) * std + mean)

    for name, m in module.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            fan_in = m.weight[0].numel()
            # residual-branch outputs get a smaller scale so 16 stacked blocks stay well conditioned
            small = leaf in ("to_out", "o", "wo", "2", "project_out", "postprocess_conv") or name.endswith("layers.3")
            audio_out = isinstance(m, nn.Conv1d) and m.out_channels == 2 and m.bias is None  # VAE output conv
            normal(m.weight, (0.03 if audio_out else 0.5 if small else 1.0) / math.sqrt(fan_in))
            if m.bias is not None:
                normal(m.bias, 0.02)
        elif isinstance(m, nn.ConvTranspose1d):
            fan_in = m.in_channels * m.kernel_size[0] / m.stride[0]
            normal(m.weight, 1.0 / math.sqrt(fan_in))
            normal(m.bias, 0.02)
        elif isinstance(m, nn.Embedding):
            normal(m.weight, 1.0 if leaf == "shared" else 0.5)
        elif isinstance(m, nn.LayerNorm):
            normal(m.weight, 0.1, 1.0)
            normal(m.bias, 0.1)
        elif isinstance(m, T5LayerNorm):
            normal(m.weight, 0.1, 1.0)
    for m in module.modules():
        if isinstance(m, T5Attention):
            # T5 attention has no 1/sqrt(d_kv) on its logits; trained T5 (and Hugging Face's T5 init, q std
            # (d_model * d_kv)^-0.5) folds it into q. Without it random logits have std ~sqrt(d_kv) = 8, softmax
            # is near one-hot, and int8 T5 parity collapses (measured 16 vs 35 dB:
            # benchmarks/quantization/t5_int8_scaling.py).
            m.q.weight.mul_(1.0 / math.sqrt(m.d_kv))
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma":  # DiT LayerNorm
            normal(p, 0.1, 1.0)
        elif leaf in ("alpha", "beta"):  # SnakeBeta, log scale
            normal(p, 0.1)
        elif leaf in ("weights",) or name.endswith("timestep_features.weight"):
            normal(p, 1.0)  # Fourier frequencies, randn as upstream


# Gains the conditioned decoder is built to (each measured on its own output with unit-std latents in):
COND_UNIT = 1.0        # every convolution outside a residual branch's last one: unit-std output
COND_RESIDUAL = 0.3    # a residual branch's last 1x1 convolution: the branch adds 0.3 of the stream's std
COND_AUDIO = 0.1       # the output convolution: audio at about -20 dBFS RMS
COND_SNAKE_STD = 0.3   # SnakeBeta log alpha / log beta ~ N(0, 0.3): frequencies and gains within ~[0.4, 2.5]


@torch.no_grad()
def condition_decoder_(decoder: nn.Module, *, seed: int, frames: int = 16) -> None:
    """Rescale a randomized Oobleck decoder data-dependently so it is conditioned like a trained one (in place).

    `randomize_` alone leaves the decoder amplifying weight noise: each convolution's output scale drifts block
    by block, the residual branches are as large as the stream, and per-channel int8 weight rounding (about 40 dB
    on the weights) leaves ~16 dB on the audio. Trained decoders keep activations near unit scale with small
    residual updates. So, in one forward pass on unit-std latents (`frames` long), each convolution in order is
    rescaled (weight and bias together) so its output has the std it is built to: COND_RESIDUAL for the last
    convolution of a residual branch, COND_AUDIO for the output convolution, COND_UNIT for every other one; the
    Snake parameters are redrawn at COND_SNAKE_STD first. Later layers see the already-rescaled earlier ones.
    Measured by tests/test_sensitivity.py::test_conditioned_decoder_keeps_weight_noise_small.
    """
    from edgegen.components.oobleck import ResidualUnit, SnakeBeta

    g = torch.Generator().manual_seed(seed)
    for m in decoder.modules():
        if isinstance(m, SnakeBeta):
            m.alpha.copy_(torch.randn(m.alpha.shape, generator=g) * COND_SNAKE_STD)
            m.beta.copy_(torch.randn(m.beta.shape, generator=g) * COND_SNAKE_STD)
    convs = [m for m in decoder.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
    target = {id(m): COND_UNIT for m in convs}
    for unit in decoder.modules():
        if isinstance(unit, ResidualUnit):
            target[id(unit.layers[-1])] = COND_RESIDUAL
    target[id(convs[-1])] = COND_AUDIO

    def rescale(module, _inputs, output):
        gain = target[id(module)] / output.std().clamp_min(1e-12)
        module.weight.mul_(gain)
        if module.bias is not None:
            module.bias.mul_(gain)
        return output * gain

    handles = [m.register_forward_hook(rescale) for m in convs]
    try:
        decoder(torch.randn(1, decoder.config.latent_dim, frames, generator=g))
    finally:
        for h in handles:
            h.remove()
