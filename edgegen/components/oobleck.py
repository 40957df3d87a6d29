"""Oobleck VAE: decoder (the third exported artifact), encoder and the VAE bottleneck.

    OobleckDecoder(latents [B, 64, T]) -> audio [B, 2, T * prod(strides)]     (no tanh)
    OobleckEncoder(audio [B, 2, N])   -> [B, 2 * 64, N / prod(strides)]      (mean | scale)
    vae_bottleneck(encoded, noise=None) -> latents [B, 64, T]                 (the mean unless noise is given)

Checkpoint convs are weight-normed (`weight_g`, `weight_v`); these modules hold plain `weight`s and the
loader folds g * v / ||v|| once (see `checkpoint.py`). Module indices mirror upstream's Sequentials, so
names line up with `pretransform.model.{encoder,decoder}.`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class OobleckConfig:
    channels: int = 128
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
    strides: tuple[int, ...] = (2, 4, 4, 8, 8)
    latent_dim: int = 64  # decoder input; the encoder emits 2 * latent_dim (mean, scale)
    audio_channels: int = 2

    @property
    def hop(self) -> int:
        return math.prod(self.strides)


OOBLECK_CONFIGS = {
    "sao-small": OobleckConfig(),
    # random:tiny's VAE (edgegen/presets.py builds its config from this): two blocks instead of five, the same
    # 2048-sample hop, so every export of it lowers, and every test runs, half the decoder. SAO-small's five-block
    # topology is checked on its own config (tests/test_streaming.py, tests/test_stateful_stream.py) and in the
    # upstream fixture's model.
    "tiny": OobleckConfig(channels=8, c_mults=(4, 16), strides=(64, 32)),
}


class SnakeBeta(nn.Module):
    """x + 1 / (exp(beta) + 1e-9) * sin(exp(alpha) * x)^2, per-channel log-scale alpha and beta."""

    export_form = False

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    @torch.no_grad()
    def constants(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(exp(alpha), 1 / (exp(beta) + 1e-9)), [C] each: the constants the export forms fold."""
        return self.alpha.exp(), 1.0 / (self.beta.exp() + 1e-9)

    def fold(self) -> None:
        """Export form: the constants as [1, C, 1] buffers."""
        alpha_exp, inv_beta = self.constants()
        self.register_buffer("alpha_exp", alpha_exp[None, :, None].clone(), persistent=False)
        self.register_buffer("inv_beta", inv_beta[None, :, None].clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, C, N)
        if self.export_form:
            return x + self.inv_beta * torch.sin(x * self.alpha_exp).pow(2)
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels),
            nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class DecoderBlock(nn.Module):
    """Snake -> ConvTranspose1d (k = 2s, upsample x s) -> 3 residual units (dilation 1, 3, 9)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(c_in),
            nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
            ResidualUnit(c_out, 1), ResidualUnit(c_out, 3), ResidualUnit(c_out, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class EncoderBlock(nn.Module):
    """3 residual units (dilation 1, 3, 9) -> Snake -> strided Conv1d (k = 2s, downsample / s)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            ResidualUnit(c_in, 1), ResidualUnit(c_in, 3), ResidualUnit(c_in, 9),
            SnakeBeta(c_in),
            nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class OobleckDecoder(nn.Module):
    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        self.config = cfg
        ch = [cfg.channels * m for m in (1, *cfg.c_mults)]
        blocks = [DecoderBlock(ch[i], ch[i - 1], cfg.strides[i - 1]) for i in range(len(ch) - 1, 0, -1)]
        self.layers = nn.Sequential(
            nn.Conv1d(cfg.latent_dim, ch[-1], 7, padding=3),
            *blocks,
            SnakeBeta(ch[0]),
            nn.Conv1d(ch[0], cfg.audio_channels, 7, padding=3, bias=False),
        )
        self.scale = 1.0  # pretransform latent scale ("scale" in model_config.json, 1 for SAO-small)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.layers(latents * self.scale if self.scale != 1.0 else latents)


class Decoder2D(nn.Module):
    """Export form of an OobleckDecoder for ExecuTorch/XNNPACK: activations [B, C, 1, L], every convolution a 2-D
    one with a 1 x k kernel (same weights, one more axis).

    XNNPACK has no 1-D convolution: ExecuTorch lowers a Conv1d as a 2-D one wrapped in reshapes and transposes to
    and from XNNPACK's channels-last layout, around every convolution. Held 4-D, the whole chain (Snake included)
    stays channels-last inside the delegate, with one transpose at each end, and XNNPACK quantizes 2-D
    convolutions dynamically (int8 weights per output channel, int8 activations with one scale per call), which it
    does not do for 1-D ones. A ConvTranspose1d (kernel 2s, stride s) becomes its polyphase form, a kernel-2
    convolution to s x O channels whose outputs interleave into time (`ConvTransposePoly`): XNNPACK's own
    transposed convolution made the decoder's five ConvTransposes cost 0.29 s more per window in fp32. Measured on
    one 60-frame window of the full-size decoder (benchmarks/JOURNAL.md, 2 cores with VNNI): fp32 0.99 s vs 1.17 s
    for the GEMM form this replaced, every layer int8 0.42 vs 0.88 s, `fast` 0.61 vs 0.99 s. Module paths are the
    reference decoder's, so recipe rules and sensitivity names match them as they are.
    """

    def __init__(self, decoder: "OobleckDecoder"):
        super().__init__()
        self.scale = decoder.scale
        self.layers = _as_2d(decoder.layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:  # [B, 64, T] -> [B, 2, T * hop]
        x = latents * self.scale if self.scale != 1.0 else latents
        return self.layers(x.unsqueeze(2)).squeeze(2)

    def conv_sources(self) -> dict[str, str]:
        """Path of each convolution -> its reference name (the same path)."""
        return {n: n for n, m in self.named_modules() if isinstance(m, (nn.Conv2d, ConvTransposePoly))}


class ConvTransposePoly(nn.Module):
    """ConvTranspose1d (kernel 2s, stride s) on [B, C, 1, L] in its polyphase form: output block b (samples
    [b*s, (b+1)*s)) = taps [0, s) applied to input frame b + taps [s, 2s) applied to frame b-1, so one kernel-2
    convolution gives every block's s x O values as channels (channel j*O + o: phase j, output channel o), which
    `interleave` puts in time order. `padded` (whole sequence): zero frames on both sides, all L+1 blocks, cropped
    by the ConvTranspose's padding. Unpadded (the stateful stream, its input led by the last frame of the previous
    call): the L blocks both of whose frames are known."""

    def __init__(self, conv: nn.ConvTranspose1d, *, padded: bool = True):
        super().__init__()
        (k,), (s,), (p,) = conv.kernel_size, conv.stride, conv.padding
        if k != 2 * s or conv.output_padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            raise ValueError(f"polyphase form handles ConvTranspose1d with kernel = 2 x stride only, got k={k} s={s}")
        self.s, self.p, self.out_ch, self.padded = s, p, conv.out_channels, padded
        w = conv.weight.detach()                                  # [I, O, 2s]
        current, previous = w[:, :, :s].permute(2, 1, 0), w[:, :, s:].permute(2, 1, 0)   # [s, O, I] each
        kernel = torch.stack([previous, current], -1).reshape(s * self.out_ch, w.shape[0], 1, 2)
        self.weight = nn.Parameter(kernel.contiguous(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.bias = nn.Parameter(bias.repeat(s).clone(), requires_grad=False)   # every phase adds its channel's bias

    def interleave(self, y: torch.Tensor) -> torch.Tensor:
        """[B, s*O, 1, n] (channel j*O + o) -> [B, O, 1, n*s]."""
        b, n = y.shape[0], y.shape[-1]
        return y.reshape(b, self.s, self.out_ch, n).permute(0, 2, 3, 1).reshape(b, self.out_ch, 1, n * self.s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.padded:
            return self.interleave(F.conv2d(x, self.weight, self.bias))
        full = self.interleave(F.conv2d(x, self.weight, self.bias, padding=(0, 1)))   # L + 1 blocks
        n = full.shape[-1] - 2 * self.p
        return full[..., self.p:self.p + n]


class _Snake2D(nn.Module):
    def __init__(self, snake: SnakeBeta):
        super().__init__()
        alpha_exp, inv_beta = snake.constants()
        self.register_buffer("alpha_exp", alpha_exp.reshape(1, -1, 1, 1).clone())
        self.register_buffer("inv_beta", inv_beta.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, 1, L]
        return x + self.inv_beta * torch.sin(x * self.alpha_exp).pow(2)  # pow(2) lowers to one XNNPACK square


class _Holder2D(nn.Module):
    """A ResidualUnit (residual=True) or DecoderBlock in the 2-D form, `.layers` kept so paths match."""

    def __init__(self, layers: nn.Sequential, residual: bool):
        super().__init__()
        self.layers, self.residual = _as_2d(layers), residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


def _conv_2d(conv: nn.Module) -> nn.Module:
    if isinstance(conv, nn.ConvTranspose1d):
        return ConvTransposePoly(conv).eval()
    (k,), (s,), (p,), (d,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    bias = conv.bias is not None
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError("2-D form handles zero-padded Conv1d without groups only")
    m = nn.Conv2d(conv.in_channels, conv.out_channels, (1, k), stride=(1, s), padding=(0, p), dilation=(1, d),
                  bias=bias)
    with torch.no_grad():
        m.weight.copy_(conv.weight.detach().unsqueeze(2))
        if bias:
            m.bias.copy_(conv.bias.detach())
    return m.eval()


def _as_2d(m: nn.Module) -> nn.Module:
    if isinstance(m, SnakeBeta):
        return _Snake2D(m)
    if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
        return _conv_2d(m)
    if isinstance(m, (ResidualUnit, DecoderBlock)):
        return _Holder2D(m.layers, residual=isinstance(m, ResidualUnit))
    if isinstance(m, nn.Sequential):
        return nn.Sequential(*[_as_2d(c) for c in m])
    raise TypeError(f"no 2-D form for {type(m).__name__}")


class _ConvCL(nn.Module):
    """A stride-1 "same" Conv1d as im2col + Linear on [B, L, C]."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        (k,), (d,), (p,), (s,) = conv.kernel_size, conv.dilation, conv.padding, conv.stride
        if s != 1 or 2 * p != (k - 1) * d or conv.groups != 1:
            raise ValueError(f"channels-last form handles stride-1 'same' convs only, got k={k} d={d} p={p} s={s}")
        self.k, self.d, self.p = k, d, p
        self.linear = nn.Linear(conv.in_channels * k, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():  # [O, I, k] -> [O, k*I], taps outermost to match the concatenation below
            self.linear.weight.copy_(conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1))
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return self.linear(x)
        L = x.shape[1]
        xp = F.pad(x, (0, 0, self.p, self.p))
        return self.linear(torch.cat([xp[:, i * self.d:i * self.d + L] for i in range(self.k)], dim=-1))


class _ConvTransposeCL(nn.Module):
    """ConvTranspose1d with kernel 2 * stride as one Linear and an overlap-add of its two halves on [B, L, C]."""

    def __init__(self, conv: nn.ConvTranspose1d):
        super().__init__()
        (k,), (s,), (p,) = conv.kernel_size, conv.stride, conv.padding
        if k != 2 * s or conv.output_padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            raise ValueError(f"channels-last form handles ConvTranspose1d with kernel = 2 x stride only, got k={k} s={s}")
        self.s, self.p, self.out = s, p, conv.out_channels
        self.linear = nn.Linear(conv.in_channels, k * conv.out_channels, bias=False)
        with torch.no_grad():  # [I, O, k] -> [k*O, I], rows ordered (tap, out channel)
            self.linear.weight.copy_(conv.weight.permute(2, 1, 0).reshape(k * conv.out_channels, conv.in_channels))
        self.register_buffer("bias", conv.bias.detach().clone() if conv.bias is not None
                             else torch.zeros(conv.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, I] -> [B, (L-1)*s - 2p + 2s, O]
        B, L, _ = x.shape
        z = self.linear(x)
        half = self.s * self.out
        first = F.pad(z[..., :half], (0, 0, 0, 1))   # taps [0, s) of input t land at t*s + j
        second = F.pad(z[..., half:], (0, 0, 1, 0))  # taps [s, 2s) of input t-1 land there too
        full = (first + second).reshape(B, (L + 1) * self.s, self.out)
        n = (L - 1) * self.s - 2 * self.p + 2 * self.s
        return full[:, self.p:self.p + n] + self.bias


class GemmNCL(nn.Module):
    """One convolution computed in its GEMM form (_ConvCL / _ConvTransposeCL) on [B, C, L], transposed in and out:
    a whole-sequence LiteRT decoder keeps its other convolutions as convolutions."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.gemm = _ConvTransposeCL(conv) if isinstance(conv, nn.ConvTranspose1d) else _ConvCL(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gemm(x.transpose(1, 2)).transpose(1, 2)


def with_gemm_layers(decoder: nn.Module, names: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Replace, in place, the named convolutions of `decoder` by their GemmNCL form. Returns (Linear path ->
    reference name, convolution path -> reference name) of the result."""
    for name in names:
        parent, _, child = name.rpartition(".")
        holder = decoder.get_submodule(parent) if parent else decoder
        setattr(holder, child, GemmNCL(getattr(holder, child)))
    linears = {f"{name}.gemm.linear": name for name in names}
    convs = {n: n for n, m in decoder.named_modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))}
    return linears, convs


def conv_names(decoder: nn.Module) -> list[str]:
    """The module paths of a decoder's convolutions in forward order: the names recipes and sensitivity use."""
    return [n for n, m in decoder.named_modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


def gemm_sources(module: nn.Module) -> dict[str, str]:
    """Linear module path -> the reference layer it computes: a StatefulDecoder knows the source of each of its
    GEMM-form convolutions; any other module's Linears are their own source."""
    if hasattr(module, "linear_sources"):  # a StatefulDecoder: some or all of its convolutions are GEMMs
        return module.linear_sources()
    return {n: n for n, m in module.named_modules() if isinstance(m, nn.Linear)}


class OobleckEncoder(nn.Module):
    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        self.config = cfg
        ch = [cfg.channels * m for m in (1, *cfg.c_mults)]
        blocks = [EncoderBlock(ch[i], ch[i + 1], cfg.strides[i]) for i in range(len(ch) - 1)]
        self.layers = nn.Sequential(
            nn.Conv1d(cfg.audio_channels, ch[0], 7, padding=3),
            *blocks,
            SnakeBeta(ch[-1]),
            nn.Conv1d(ch[-1], 2 * cfg.latent_dim, 3, padding=1),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.layers(audio)


def vae_bottleneck(encoded: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Latents from the encoder output: the mean, or mean + (softplus(scale) + 1e-4) * noise."""
    mean, scale = encoded.chunk(2, dim=1)
    if noise is None:
        return mean
    return mean + (F.softplus(scale) + 1e-4) * noise

