"""Tensors-in, tensors-out wrappers: the exact signatures of the three bundle artifacts.

    text_encoder  token_ids int32 [1, L], attention_mask int32 [1, L], seconds_total float32 [1]
                  -> cross_attn_cond float32 [1, L + 1, C], global_cond float32 [1, C]
    dit           x [1, 64, T], t [1], cross_attn_cond [1, L + 1, C], global_cond [1, C] -> v [1, 64, T]
    decoder       latents [1, 64, T] -> audio [1, 2, T * hop]     (an overlapped stream, schema 2: T = the window)
                  stateful stream (schema 3): latents [1, 64, W], position [2], state [1, S]
                  -> audio [1, 2, W * hop], next_state [1, S]     (see components/stateful_decoder.py)
    encoder       audio [1, 2, T * hop] -> latent_mean [1, 64, T], latent_std [1, 64, T]   (optional, audio-to-audio:
                  the VAE bottleneck's sample mean + std * noise is taken outside, with the runtime's noise)

Inputs are bound by name everywhere (manifest, runners); the lists below give the order each artifact
takes them in. `to_half` + `half=True` run a component in fp16 with fp32 I/O (Arm's decoder setting).
"""

from __future__ import annotations

import torch
from torch import nn


class TextEncoderExport(nn.Module):
    def __init__(self, text_encoder: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, token_ids, attention_mask, seconds_total):
        return self.text_encoder(token_ids, attention_mask, seconds_total)


class DiTExport(nn.Module):
    def __init__(self, dit: nn.Module, *, half: bool = False):
        super().__init__()
        self.dit, self.half = dit, half

    def forward(self, x, t, cross_attn_cond, global_cond):
        if self.half:
            return self.dit(x.half(), t.half(), cross_attn_cond.half(), global_cond.half()).float()
        return self.dit(x, t, cross_attn_cond, global_cond)


class DecoderExport(nn.Module):
    def __init__(self, decoder: nn.Module, *, half: bool = False):
        super().__init__()
        self.decoder, self.half = decoder, half

    def forward(self, latents):
        if self.half:
            return self.decoder(latents.half()).float()
        return self.decoder(latents)


class StatefulDecoderExport(nn.Module):
    """A StatefulDecoder with fp32 I/O (fp16 inside when `half`; the state stays fp32 between calls)."""

    def __init__(self, decoder: nn.Module, *, half: bool = False):
        super().__init__()
        self.decoder, self.half = decoder, half

    def forward(self, latents, position, state):
        if self.half:
            audio, state = self.decoder(latents.half(), position, state)
            return audio.float(), state
        return self.decoder(latents, position, state)


class EncoderExport(nn.Module):
    """The VAE encoder and the bottleneck's deterministic half: std = softplus(scale) + 1e-4 (as `vae_bottleneck`)."""

    def __init__(self, encoder: nn.Module, *, half: bool = False):
        super().__init__()
        self.encoder, self.half = encoder, half

    def forward(self, audio):
        encoded = self.encoder(audio.half()).float() if self.half else self.encoder(audio)
        mean, scale = encoded.chunk(2, dim=1)
        return mean, torch.nn.functional.softplus(scale) + 1e-4


def io_spec(pipe, component: str, *, stream: dict | None = None) -> dict[str, list[dict]]:
    """Names, dtypes and shapes of an artifact's inputs (in call order) and outputs; a `stream` (the manifest's
    decoder_stream) gives the decoder a [1, 64, window] input instead of the whole sequence, and a stateful one
    the position and state inputs and the next_state output."""
    L, C = pipe.config.max_length, pipe.config.cond_dim
    T, ch = pipe.latent_length, pipe.config.dit.io_channels
    if component == "decoder" and stream:
        T = stream["window"]
    f32 = "float32"
    spec = {
        "text_encoder": ([("token_ids", "int32", [1, L]), ("attention_mask", "int32", [1, L]),
                          ("seconds_total", f32, [1])],
                         [("cross_attn_cond", f32, [1, L + 1, C]), ("global_cond", f32, [1, C])]),
        "dit": ([("x", f32, [1, ch, T]), ("t", f32, [1]), ("cross_attn_cond", f32, [1, L + 1, C]),
                 ("global_cond", f32, [1, C])], [("v", f32, [1, ch, T])]),
        "decoder": ([("latents", f32, [1, ch, T])], [("audio", f32, [1, 2, T * pipe.config.vae.hop])]),
        "encoder": ([("audio", f32, [1, 2, T * pipe.config.vae.hop])],
                    [("latent_mean", f32, [1, ch, T]), ("latent_std", f32, [1, ch, T])]),
    }[component]
    if component == "decoder" and stream and stream.get("mode") == "stateful":
        S = stream["state_size"]
        spec = ([*spec[0], ("position", f32, [2]), ("state", f32, [1, S])], [*spec[1], ("next_state", f32, [1, S])])
    io = {key: [{"name": n, "dtype": d, "shape": s} for n, d, s in rows] for key, rows in zip(("inputs", "outputs"), spec)}
    for k, i in enumerate(io["inputs"]):
        i["index"] = k  # the input's position in the call: runners bind name -> index, whatever the list order
    return io


_DTYPES = {"int32": torch.int32, "float32": torch.float32}


def example_inputs(pipe, component: str, *, seed: int = 0, stream: dict | None = None) -> tuple[torch.Tensor, ...]:
    """Representative inputs: real tokens for the text encoder, N(0,1) latents, t = 0.5, audio at 0.3 std; a
    stateful decoder's first window (position [0, T], zero state)."""
    g = torch.Generator().manual_seed(seed)
    if component == "text_encoder":
        ids, mask = pipe.tokenize(["warm lo-fi piano loop with soft drums"])
        return ids.int(), mask.int(), torch.tensor([min(10.0, pipe.max_seconds)])
    shapes = [tuple(i["shape"]) for i in io_spec(pipe, component, stream=stream)["inputs"]]
    tensors = [torch.randn(s, generator=g) for s in shapes]
    if component == "dit":
        tensors[1] = torch.tensor([0.5])
    if component == "encoder":
        tensors[0] = 0.3 * tensors[0]
    if component == "decoder" and len(tensors) == 3:
        tensors[1] = torch.tensor([0.0, float(pipe.latent_length)])
        tensors[2] = torch.zeros_like(tensors[2])
    return tuple(tensors)


def to_half(component: str, module: nn.Module) -> nn.Module:
    """`module` (a copy) computing in fp16, for `wrap(component, ..., half=True)`. The DiT and the decoder are cast
    whole; the text encoder casts only its T5 (int32 token inputs, fp32 output via `TextEncoder`): its seconds
    conditioner takes the fp32 `seconds_total` by design and is a single small MLP, so it stays fp32."""
    if component == "text_encoder":
        module.t5.half()
        return module
    return module.half()


def wrap(component: str, module: nn.Module, *, half: bool = False) -> nn.Module:
    """The export wrapper of `component` around `module` (a pipeline's, or a quantized copy of it)."""
    if component == "text_encoder":
        return TextEncoderExport(module).eval()
    if component == "dit":
        return DiTExport(module, half=half).eval()
    if component == "encoder":
        return EncoderExport(module, half=half).eval()
    from edgegen.components.stateful_decoder import StatefulDecoder

    if isinstance(module, StatefulDecoder):
        return StatefulDecoderExport(module, half=half).eval()
    return DecoderExport(module, half=half).eval()
