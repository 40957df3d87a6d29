"""Stateful streaming form of the Oobleck decoder: every latent frame is decoded once.

    sd = StatefulDecoder(decoder, window=16)                 # layout="nc1l": ExecuTorch's 4-D convolutions
    state = sd.initial_state()                               # [1, sd.state_size] zeros
    for c in range(calls):                                   # see edgegen.streaming.decode_stateful
        audio, state = sd(latents_window, torch.tensor([c * 16.0, T]), state)

The decoder's convolutions are "same" (non-causal) and its transposed convolutions overlap-add, so output sample n
depends on latent frames on both sides. Here each convolution runs causally on its input stream: it keeps the last
(k-1)*d input samples it saw (its left context) as state and, on each window, convolves [state, window] without
padding. Its output is then its "same" output delayed by p = (k-1)*d/2 samples; a transposed convolution keeps its
last input frame and emits only the outputs both of their input frames are known for (delay in*s + p); a residual
unit delays its skip path to match its branch. So the stream out of the decoder is the whole decode delayed by
`delay` samples (SAO-small: 18981, 9.27 latent frames; random:tiny's two blocks: 9738): feed
ceil((samples + delay) / hop) latent frames (zeros past the sequence) and drop the first `delay` output samples.
Nothing is decoded twice, and a window can be as small as one frame.

Sequence edges: the whole decode zero-pads every convolution's input at both ends, so each convolution's input is
multiplied by a mask that is 1 where its (delayed) stream index lies inside the sequence and 0 elsewhere (the left
padding the state starts with, the samples before the sequence start a delayed stream carries, and everything past
its end). `position` = [first latent frame of this window, latent frames in the sequence] drives the masks. With it
the stream equals the whole decode up to float rounding (fp32: > 100 dB, tests/test_stateful_decoder.py).

Artifact signature (manifest schema 3): latents f32 [1, 64, W], position f32 [2], state f32 [1, S] ->
audio f32 [1, 2, W * hop], state f32 [1, S]. All per-layer states travel packed in one flat vector, so a runner copies
one output into one input between calls; S does not depend on W and is small (SAO-small: 244736 floats, 0.98 MB).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgegen.components.oobleck import (ConvTransposePoly, DecoderBlock, OobleckDecoder, ResidualUnit, SnakeBeta,
                                        conv_names)


TIME_DIM = {"ncl": 2, "nlc": 1, "nc1l": 3}   # layout -> the time axis


def _shape(layout: str, channels: int, length: int) -> tuple[int, ...]:
    """A one-batch tensor's shape in `layout`."""
    return {"ncl": (1, channels, length), "nlc": (1, length, channels), "nc1l": (1, channels, 1, length)}[layout]


class _Call:
    """Per-call bookkeeping while the layers run: the incoming states in order, the outgoing ones, the masks."""

    def __init__(self, states: list[torch.Tensor], position: torch.Tensor, ramp: torch.Tensor, layout: str):
        self.states, self.out, self.layout = iter(states), [], layout
        self.start, self.length, self.ramp = position[0:1], position[1:2], ramp

    def take(self) -> torch.Tensor:
        return next(self.states)

    def mask(self, x: torch.Tensor, rate: int, delay: int) -> torch.Tensor:
        """x with the samples whose delayed stream index t falls outside [0, length * rate) set to 0.

        t is integer-valued, so clamp(t + 1, 0, 1) is [t >= 0] and clamp(length * rate - t, 0, 1) is
        [t < length * rate]: float arithmetic that XNNPACK delegates (comparisons and casts would cut the graph
        into pieces around every mask), on a constant ramp 0..n-1 instead of an arange."""
        n = x.shape[TIME_DIM[self.layout]]
        t = self.ramp[:n] + (self.start * rate - delay)
        keep = torch.clamp(t + 1.0, 0.0, 1.0) * torch.clamp(self.length * rate - t, 0.0, 1.0)
        return x * keep.to(x.dtype).reshape(_shape(self.layout, 1, n))


class _Layer(nn.Module):
    """A streamed layer: input at `rate` samples per latent frame delayed by `delay`; sets `delay_out`, `rate_out`
    and `states` (the shapes of the state tensors it takes, in order, per batch of 1)."""

    def __init__(self, rate: int, delay: int, layout: str):
        super().__init__()
        self.rate, self.delay, self.layout, self.tdim = rate, delay, layout, TIME_DIM[layout]
        self.rate_out, self.delay_out, self.states = rate, delay, []

    def _state_shape(self, length: int, channels: int) -> tuple[int, ...]:
        return _shape(self.layout, channels, length)

    def _cat(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([state, x], dim=self.tdim)

    def _time(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        return x.narrow(self.tdim, lo, hi - lo)


class _Snake(_Layer):
    def __init__(self, snake: SnakeBeta, rate: int, delay: int, form: "_Form"):
        super().__init__(rate, delay, form.layout)
        alpha_exp, inv_beta = snake.constants()
        shape = _shape(self.layout, -1, 1)
        self.register_buffer("alpha_exp", alpha_exp.reshape(shape).clone())
        self.register_buffer("inv_beta", inv_beta.reshape(shape).clone())

    def forward(self, x: torch.Tensor, call: _Call) -> torch.Tensor:
        return x + self.inv_beta * torch.sin(x * self.alpha_exp).pow(2)


class _Form:
    """How the convolutions are computed: the layout, the reference name of each convolution (recipes match it),
    and which run as a GEMM (one Linear; every one in the channels-last layout) rather than as a convolution."""

    def __init__(self, decoder: nn.Module, layout: str, gemm_layers):
        self.layout, self.gemm_layers = layout, set(gemm_layers or ())
        self.names = {id(m): n for n, m in decoder.named_modules()}

    def name(self, m: nn.Module) -> str:
        return self.names[id(m)]

    def gemm(self, m: nn.Module) -> bool:
        return self.layout == "nlc" or self.name(m) in self.gemm_layers


class _Conv(_Layer):
    """A stride-1 "same" Conv1d run causally: state = its last (k-1)*d input samples; output delayed by p."""

    def __init__(self, conv: nn.Conv1d, rate: int, delay: int, form: _Form):
        super().__init__(rate, delay, form.layout)
        self.source, self.gemm = form.name(conv), form.gemm(conv)
        (k,), (d,), (p,), (s,) = conv.kernel_size, conv.dilation, conv.padding, conv.stride
        if s != 1 or 2 * p != (k - 1) * d or conv.groups != 1:
            raise ValueError(f"stateful form handles stride-1 'same' convs only, got k={k} d={d} p={p} s={s}")
        self.k, self.d, self.context = k, d, (k - 1) * d
        self.delay_out = delay + p
        if self.context:
            self.states = [self._state_shape(self.context, conv.in_channels)]
        if self.gemm:  # im2col + Linear, as oobleck._ConvCL: [O, I, k] -> [O, k*I], taps outermost
            self.linear = nn.Linear(conv.in_channels * k, conv.out_channels, bias=conv.bias is not None)
            with torch.no_grad():
                self.linear.weight.copy_(conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1))
                if conv.bias is not None:
                    self.linear.bias.copy_(conv.bias.detach())
        else:  # [O, I, k], or [O, I, 1, k] in the 4-D layout
            weight = conv.weight.detach().clone()
            self.weight = nn.Parameter(weight.unsqueeze(2) if self.layout == "nc1l" else weight, requires_grad=False)
            self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor, call: _Call) -> torch.Tensor:
        if self.context:
            x = call.mask(x, self.rate, self.delay)
            buf = self._cat(call.take(), x)
            n = buf.shape[self.tdim]
            call.out.append(self._time(buf, n - self.context, n))
        else:
            buf = x
        if self.layout == "nc1l":
            return F.conv2d(buf, self.weight, self.bias, dilation=(1, self.d))
        if not self.gemm:
            return F.conv1d(buf, self.weight, self.bias, dilation=self.d)
        cl = self.layout == "nlc"
        rows = buf if cl else buf.transpose(1, 2)               # [1, context + L, C]
        if self.k == 1:
            y = self.linear(rows)
        else:
            L = rows.shape[1] - self.context
            y = self.linear(torch.cat([rows[:, i * self.d:i * self.d + L] for i in range(self.k)], dim=-1))
        return y if cl else y.transpose(1, 2)


class _ConvTranspose(_Layer):
    """ConvTranspose1d (kernel 2s, stride s, padding p) run causally: state = its last input frame; of the outputs
    of [state, window] it emits the L*s that both their input frames are known for. Delay: delay*s + p."""

    def __init__(self, conv: nn.ConvTranspose1d, rate: int, delay: int, form: _Form):
        super().__init__(rate, delay, form.layout)
        self.source, self.gemm = form.name(conv), form.gemm(conv)
        (k,), (s,), (p,) = conv.kernel_size, conv.stride, conv.padding
        if k != 2 * s or conv.output_padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
            raise ValueError(f"stateful form handles ConvTranspose1d with kernel = 2 x stride only, got k={k} s={s}")
        self.s, self.out_ch = s, conv.out_channels
        self.rate_out, self.delay_out = rate * s, delay * s + p
        self.states = [self._state_shape(1, conv.in_channels)]
        bias = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        if self.gemm:  # one Linear to the 2s taps of every output channel, as oobleck._ConvTransposeCL
            self.linear = nn.Linear(conv.in_channels, k * conv.out_channels, bias=False)
            with torch.no_grad():
                self.linear.weight.copy_(conv.weight.detach().permute(2, 1, 0).reshape(k * conv.out_channels, -1))
            self.register_buffer("bias", bias)
        elif self.layout == "nc1l":  # a kernel-2 convolution whose s x O output channels interleave into time
            self.poly = ConvTransposePoly(conv, padded=False)
        else:
            self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
            self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor, call: _Call) -> torch.Tensor:
        x = call.mask(x, self.rate, self.delay)
        buf = self._cat(call.take(), x)                          # L + 1 frames
        L = x.shape[self.tdim]
        call.out.append(self._time(buf, L, L + 1))
        if self.layout == "nc1l":
            return self.poly(buf)                                # blocks 1..L: [1, O, 1, L * s]
        if not self.gemm:
            full = F.conv_transpose1d(buf, self.weight, self.bias, stride=self.s)   # [1, O, (L + 2) * s]
            return full[:, :, self.s:(L + 1) * self.s]
        cl = self.layout == "nlc"
        z = self.linear(buf if cl else buf.transpose(1, 2))      # [1, L + 1, 2s * O]
        half = self.s * self.out_ch
        # output block b (samples [b*s, (b+1)*s) of the full transposed conv) = first taps of frame b + last taps of
        # frame b-1; blocks 1..L are complete
        blocks = z[:, 1:L + 1, :half] + z[:, 0:L, half:]
        y = blocks.reshape(1, L * self.s, self.out_ch) + self.bias
        return y if cl else y.transpose(1, 2)


class _Residual(_Layer):
    """x + f(x) with the skip path delayed by f's delay (state: that many past input samples)."""

    def __init__(self, unit: ResidualUnit, rate: int, delay: int, form: _Form):
        super().__init__(rate, delay, form.layout)
        self.layers = _chain(unit.layers, rate, delay, form)
        self.lag = self.layers[-1].delay_out - delay
        self.delay_out = delay + self.lag
        channels = unit.layers[1].in_channels
        self.states = ([self._state_shape(self.lag, channels)] if self.lag else []) + \
            [s for m in self.layers for s in m.states]

    def forward(self, x: torch.Tensor, call: _Call) -> torch.Tensor:
        skip = x
        if self.lag:
            buf = self._cat(call.take(), x)
            n = buf.shape[self.tdim]
            call.out.append(self._time(buf, n - self.lag, n))
            skip = self._time(buf, 0, n - self.lag)
        y = x
        for m in self.layers:
            y = m(y, call)
        return skip + y


def _chain(modules, rate: int, delay: int, form: _Form) -> nn.ModuleList:
    """The streamed form of `modules` (in forward order), each taking the previous one's rate and delay."""
    out = []
    for m in modules:
        if isinstance(m, DecoderBlock):
            out.extend(_chain(m.layers, rate, delay, form))
        else:
            kind = {SnakeBeta: _Snake, nn.ConvTranspose1d: _ConvTranspose, nn.Conv1d: _Conv,
                    ResidualUnit: _Residual}.get(type(m))
            if kind is None:
                raise TypeError(f"no stateful form for {type(m).__name__}")
            out.append(kind(m, rate, delay, form))
        rate, delay = out[-1].rate_out, out[-1].delay_out
    return nn.ModuleList(out)


class StatefulDecoder(nn.Module):
    """latents [1, 64, window], position [2] = (first frame, sequence frames), state [1, S] ->
    (audio [1, 2, window * hop], next state [1, S]); the audio is the whole decode delayed by `self.delay` samples.

    `layout`, how the activations are held and the convolutions computed:
      "ncl"   Conv1d on [B, C, L] (LiteRT, eager); `gemm_layers` names the (reference names of the) convolutions
              that run as a GEMM instead, transposed in and out (LiteRT quantizes a ConvTranspose only as a
              FULLY_CONNECTED op)
      "nc1l"  every convolution a 2-D one on [B, C, 1, L] (ExecuTorch: XNNPACK keeps the whole chain channels-last
              and quantizes only 2-D convolutions dynamically, see oobleck.Decoder2D)
      "nlc"   every convolution an im2col GEMM on [B, L, C] (ExecuTorch's form before "nc1l"; kept for the
              benchmarks that compare the two, benchmarks/quantization/decoder_int8.py)"""

    def __init__(self, decoder: OobleckDecoder, *, window: int, layout: str = "ncl",
                 gemm_layers: set[str] | None = None):
        super().__init__()
        if window < 1:
            raise ValueError(f"StatefulDecoder: window must be >= 1 latent frame, got {window}")
        if layout not in TIME_DIM:
            raise ValueError(f"StatefulDecoder: layout must be one of {', '.join(TIME_DIM)}, got {layout!r}")
        if gemm_layers and layout != "ncl":
            raise ValueError(f"StatefulDecoder: gemm_layers needs the ncl layout, got {layout!r}")
        unknown = sorted(set(gemm_layers or ()) - set(conv_names(decoder)))
        if unknown:
            raise ValueError(f"StatefulDecoder: gemm_layers names no convolution of the decoder: {', '.join(unknown)}")
        self.window, self.layout, self.scale = window, layout, decoder.scale
        self.hop, self.latent_dim = decoder.config.hop, decoder.config.latent_dim
        self.layers = _chain(decoder.layers, 1, 0, _Form(decoder, layout, gemm_layers))
        self.delay = self.layers[-1].delay_out               # output samples
        self.shapes = [s for m in self.layers for s in m.states]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.state_size = sum(self.sizes)
        self.register_buffer("ramp", torch.arange(window * self.hop, dtype=torch.float32), persistent=False)

    def linear_sources(self) -> dict[str, str]:
        """Path of each GEMM-form convolution's Linear -> the reference convolution it computes."""
        return {f"{path}.linear": m.source for path, m in self.named_modules()
                if isinstance(m, (_Conv, _ConvTranspose)) and m.gemm}

    def conv_sources(self) -> dict[str, str]:
        """Path of each convolution computed as a convolution (not a GEMM) -> its reference name."""
        return {path: m.source for path, m in self.named_modules()
                if isinstance(m, (_Conv, _ConvTranspose)) and not m.gemm}

    def initial_state(self) -> torch.Tensor:
        return torch.zeros(1, self.state_size)

    def forward(self, latents: torch.Tensor, position: torch.Tensor, state: torch.Tensor):
        dtype, offsets = latents.dtype, [0]
        for size in self.sizes:
            offsets.append(offsets[-1] + size)
        states = [state[:, a:b].reshape(shape).to(dtype) for a, b, shape in zip(offsets, offsets[1:], self.shapes)]
        call = _Call(states, position, self.ramp, self.layout)
        x = latents * self.scale if self.scale != 1.0 else latents
        x = {"ncl": x, "nlc": x.transpose(1, 2), "nc1l": x.unsqueeze(2)}[self.layout]
        for m in self.layers:
            x = m(x, call)
        audio = {"ncl": x, "nlc": x.transpose(1, 2), "nc1l": x.squeeze(2)}[self.layout]
        return audio, torch.cat([s.reshape(1, -1) for s in call.out], dim=1).to(state.dtype)
