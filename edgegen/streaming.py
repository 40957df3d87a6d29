"""Streaming, tiled Oobleck decode: latents [1, 64, T] -> audio chunks [1, 2, n_i] that concatenate to [1, 2, T * hop].

    rf = receptive_field(decoder)                     # latent frames either side of an output frame (SAO-small: 10)
    for chunk in decode_stream(decoder, latents, window=60, overlap=rf, hop=2048):
        play(chunk)                                   # [1, 2, n_i], sum(n_i) = T * hop

Theory. The decoder is a stack of stride-1 "same" convs, transposed convs and pointwise Snakes, so latent frame j can
only change the output samples [j*hop - left, (j+1)*hop - 1 + right] (its footprint); `footprint()` derives
(left, right) by walking the layers. Conversely output frame f (samples [f*hop, (f+1)*hop)) depends only on latent
frames [f - ceil(right/hop), f + ceil(left/hop)]. So if every kept frame of a window is at least
rf = ceil(max(left, right) / hop) frames from each window edge that is not a sequence edge, the window's kept audio
equals the whole-sequence decode exactly (up to float rounding), and chunks are hard-cut, no crossfade. Sequence edges
are fine because the window and the whole decode then see the same zero padding.

Every window has exactly `window` latent frames (the last one is shifted left, never padded), so one decoder
exported for a [1, 64, window] input serves all windows; `decode_stream` takes any callable, eager or a bundle's.

The window plans and the two stream loops (`decode_stream`, `decode_stateful`) run on numpy arrays or torch tensors
(the type of the latents) and need no torch: a bundle's runtime path imports this module without loading it. Only
the functions that walk a decoder's layers (`footprint`, `stateful_layout`, ...) import torch, when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from edgegen.components.oobleck import OobleckConfig, OobleckDecoder


class Window(NamedTuple):
    """Latent frames [start, end) go into the decoder; latent frames [keep_start, keep_end) of its output are kept."""

    start: int
    end: int
    keep_start: int
    keep_end: int


def footprint(decoder: OobleckDecoder | OobleckConfig) -> tuple[int, int]:
    """(left, right) in output samples: how far one latent frame's influence reaches past its own hop-sized span.

    Walks the layers in forward order (registration order, as in OobleckDecoder) keeping, at the current sample
    rate, the footprint [j*U - left, (j+1)*U - 1 + right] of latent frame j, where U is the upsampling so far:
      Conv1d k, dilation d, padding p (stride 1):  out[n] reads in[n - p + i*d]   -> left += (k-1)*d - p, right += p
      ConvTranspose1d k, stride s, padding p:      in[m] writes out[m*s - p + i]  -> left = left*s + p,
                                                                                      right = (right-1)*s - p + k
      SnakeBeta: pointwise, no change.  Residual x + f(x): f's footprint contains the identity's (left, right >= 0).
    """
    import torch
    from torch import nn

    from edgegen.components.oobleck import OobleckConfig, OobleckDecoder, SnakeBeta

    if isinstance(decoder, OobleckConfig):
        with torch.device("meta"):
            decoder = OobleckDecoder(decoder)
    left = right = 0
    for name, m in decoder.named_modules():
        if isinstance(m, nn.Conv1d):
            (k,), (d,), (s,) = m.kernel_size, m.dilation, m.stride
            if s != 1 or not isinstance(m.padding, tuple):
                raise ValueError(f"footprint: {name} is a strided or string-padded Conv1d; only stride 1 is modelled")
            (p,) = m.padding
            left, right = left + (k - 1) * d - p, right + p
        elif isinstance(m, nn.ConvTranspose1d):
            (k,), (s,), (p,), (d,) = m.kernel_size, m.stride, m.padding, m.dilation
            if d != 1 or m.output_padding != (0,):
                raise ValueError(f"footprint: {name} has dilation or output_padding; not modelled")
            left, right = left * s + p, (right - 1) * s - p + k
        elif not isinstance(m, (SnakeBeta, nn.Sequential)) and not list(m.children()):
            raise ValueError(f"footprint: don't know how far {name} ({type(m).__name__}) spreads; add it here")
    return left, right


def receptive_field(decoder: OobleckDecoder | OobleckConfig) -> int:
    """One-sided receptive field in latent frames, derived from the layers (SAO-small: 10; random:tiny: 5)."""
    from edgegen.components.oobleck import OobleckConfig

    cfg = decoder if isinstance(decoder, OobleckConfig) else decoder.config
    return math.ceil(max(footprint(decoder)) / cfg.hop)


def default_window(rf: int, *, length: int = 256) -> tuple[int, int]:
    """(window, overlap=rf): of the windows in [4 * rf, length // 4], the one that decodes the fewest frames in total.

    Activations scale with the window, so <= a quarter of the sequence cuts the decode's peak memory >= 4x (plus a
    small fixed part: eager SAO-small measured ~18 MB + 4.5 MB per frame); >= 4 * rf keeps over half of each window.
    Each window re-decodes 2 * rf frames, and how the last (shifted) window lands matters too: for SAO-small
    (T = 256, rf = 10) window 60 decodes 360 frames (1.41x a whole decode) where 48 would decode 432 (1.69x).
    A sequence too short for that range gets 4 * rf.
    """
    lo, hi = 4 * rf, length // 4
    if hi < lo:
        return lo, rf
    cost = lambda w: sum(p.end - p.start for p in plan_windows(length, window=w, overlap=rf))  # noqa: E731
    return min(range(lo, hi + 1), key=lambda w: (cost(w), w)), rf


def plan_windows(length: int, *, window: int, overlap: int) -> list[Window]:
    """Windows of exactly `window` latent frames whose kept spans tile [0, length).

    Every kept frame is >= `overlap` frames from any window edge that is not a sequence edge. The first window
    starts at 0 and keeps [0, window - overlap); each next one keeps the next window - 2*overlap frames; the last one
    is shifted left to end at `length` (so it overlaps more, never pads). A sequence no longer than `window` is one
    window of `length` frames: a runtime with a static [1, 64, window] decoder must then decode it another way (e.g.
    the whole-sequence artifact), which is why `window` should be <= the shortest length served.
    """
    if length < 1:
        raise ValueError(f"plan_windows: length must be >= 1 latent frame, got {length}")
    if overlap < 0:
        raise ValueError(f"plan_windows: overlap must be >= 0, got {overlap}")
    if window <= 2 * overlap:
        raise ValueError(f"plan_windows: window ({window}) must exceed 2 * overlap ({2 * overlap}) so each window "
                         f"keeps at least one frame; use window >= {2 * overlap + 1}")
    if length <= window:
        return [Window(0, length, 0, length)]
    plan = [Window(0, window, 0, window - overlap)]
    while plan[-1].keep_end < length:
        keep_start = plan[-1].keep_end
        start = keep_start - overlap
        if start + window >= length:  # last window: shift left to end at the sequence end
            plan.append(Window(length - window, length, keep_start, length))
        else:
            plan.append(Window(start, start + window, keep_start, start + window - overlap))
    return plan


def frames_to_decode(samples: int, *, length: int, window: int, overlap: int, hop: int) -> int:
    """Latent frames a stream must decode to produce the first `samples` output samples exactly.

    Output frame f needs latent frames up to f + overlap, so a clip shorter than the sequence stops decoding
    `overlap` frames past its last needed frame (never fewer than one `window`, the decoder's static input).
    """
    return min(length, max(window, math.ceil(samples / hop) + overlap))


def decode_stream(decoder: Callable, latents, *, window: int, overlap: int, hop: int,
                  samples: int | None = None) -> Iterator:
    """Yield the kept audio of each window in order: [1, 2, (keep_end - keep_start) * hop] per chunk.

    `decoder` maps [1, C, window] latents to [1, 2, window * hop] audio (an eager module, or a bundle runtime);
    it is called lazily, once per chunk. With overlap >= receptive_field(decoder) the chunks concatenate to the
    whole-sequence decode up to float rounding. With `samples`, only the windows that the first `samples` output
    samples need are decoded and the chunks add up to exactly `samples`.
    """
    if latents.ndim != 3 or latents.shape[0] != 1:
        raise ValueError(f"decode_stream: latents must be [1, C, T], got {list(latents.shape)}")
    length = latents.shape[-1]
    if samples is not None:
        length = frames_to_decode(samples, length=length, window=window, overlap=overlap, hop=hop)
    remaining = length * hop if samples is None else min(samples, length * hop)
    for w in plan_windows(length, window=window, overlap=overlap):
        audio = decoder(_contiguous(latents[:, :, w.start:w.end]))  # [1, 2, (end - start) * hop]
        if audio.shape[-1] != (w.end - w.start) * hop:
            raise ValueError(f"decode_stream: decoder returned {audio.shape[-1]} samples for {w.end - w.start} "
                             f"latent frames; expected hop={hop} samples per frame")
        chunk = audio[:, :, (w.keep_start - w.start) * hop:(w.keep_end - w.start) * hop][:, :, :remaining]
        remaining -= chunk.shape[-1]
        yield chunk
        if remaining <= 0:
            return


# --- Stateful streaming (manifest schema 3): every latent frame decoded once --------------------------------------
# A StatefulDecoder (edgegen.components.stateful_decoder) carries each convolution's left context between calls and
# emits the whole decode delayed by `delay` samples, so windows are back to back: no overlap, no re-decoded frames.


def stateful_calls(samples: int, *, window: int, hop: int, delay: int) -> int:
    """Decoder calls a stateful stream needs for the first `samples` output samples: the stream runs `delay` samples
    behind the audio, so it must reach samples + delay (latent frames past the sequence are fed as zeros)."""
    return math.ceil(math.ceil((samples + delay) / hop) / window)


def stateful_layout(decoder: OobleckDecoder | OobleckConfig, *, window: int) -> tuple[int, int]:
    """(delay in output samples, state size in floats) of `decoder`'s StatefulDecoder; built on the meta device,
    so no weights are copied (SAO-small: delay 18981, state 244736 floats, 0.98 MB)."""
    import torch

    from edgegen.components.oobleck import OobleckConfig, OobleckDecoder
    from edgegen.components.stateful_decoder import StatefulDecoder

    cfg = decoder if isinstance(decoder, OobleckConfig) else decoder.config
    with torch.device("meta"):
        sd = StatefulDecoder(OobleckDecoder(cfg), window=window)
    return sd.delay, sd.state_size


STATEFUL_WINDOWS = range(8, 33)


def default_stateful_window(decoder: OobleckDecoder | OobleckConfig, *, length: int) -> int:
    """The window in STATEFUL_WINDOWS (latent frames per call) that decodes the fewest frames for the whole
    `length`-frame sequence (the last window is padded with zeros, so a window that divides the frames the stream
    needs wastes none); ties go to the larger window (fewer calls, each reading the weights once).

    Below 8 frames the coarse layers become matrix-vector products that re-read the decoder's weights on every call
    (measured: benchmarks/JOURNAL.md, "stateful streaming decoder"); above 32 the first audio comes later."""
    from edgegen.components.oobleck import OobleckConfig

    cfg = decoder if isinstance(decoder, OobleckConfig) else decoder.config
    delay, _ = stateful_layout(cfg, window=1)
    cost = lambda w: stateful_calls(length * cfg.hop, window=w, hop=cfg.hop, delay=delay) * w  # noqa: E731
    return min(STATEFUL_WINDOWS, key=lambda w: (cost(w), -w))


def _contiguous(x):
    return x.contiguous() if hasattr(x, "contiguous") else np.ascontiguousarray(x)


def decode_stateful(step: Callable, latents, *, window: int, hop: int, delay: int, state_size: int,
                    samples: int | None = None) -> Iterator:
    """Yield the audio of `latents` [1, C, T] (its first `samples`) in chunks, one decoder call per window.

    `step(latents [1, C, window], position [2], state [1, state_size]) -> (audio [1, 2, window * hop], state)` is a
    StatefulDecoder or a bundle's decoder artifact; latents, position and the first state are numpy float32 or
    torch tensors, the type of `latents`. Call c gets frames [c*window, (c+1)*window) (zeros past T) and
    position [c*window, T]; its audio is whole-decode samples [c*window*hop - delay, ...), so the first `delay`
    samples of the stream are dropped. Chunks are non-empty; they concatenate to the whole decode up to rounding.
    """
    if latents.ndim != 3 or latents.shape[0] != 1:
        raise ValueError(f"decode_stateful: latents must be [1, C, T], got {list(latents.shape)}")
    C, T = latents.shape[1], latents.shape[2]
    samples = T * hop if samples is None else min(samples, T * hop)
    if hasattr(latents, "detach"):
        import torch

        zeros = lambda *shape: torch.zeros(*shape, dtype=latents.dtype)  # noqa: E731
        pad = lambda x, n: torch.cat([x, zeros(1, C, n)], dim=-1)  # noqa: E731
        position = lambda p: torch.tensor(p, dtype=torch.float32)  # noqa: E731
    else:
        zeros = lambda *shape: np.zeros(shape, dtype=np.float32)  # noqa: E731
        pad = lambda x, n: np.concatenate([x, zeros(1, C, n)], axis=-1)  # noqa: E731
        position = lambda p: np.array(p, dtype=np.float32)  # noqa: E731
    state = zeros(1, state_size)
    span = window * hop
    for c in range(stateful_calls(samples, window=window, hop=hop, delay=delay)):
        x = latents[:, :, c * window:(c + 1) * window]
        if x.shape[-1] < window:
            x = pad(x, window - x.shape[-1])
        audio, state = step(_contiguous(x), position([c * window, T]), state)
        if audio.shape[-1] != span:
            raise ValueError(f"decode_stateful: decoder returned {audio.shape[-1]} samples for {window} latent "
                             f"frames; expected hop={hop} samples per frame")
        lo = c * span - delay                                # whole-decode index of audio[..., 0]
        a, b = max(lo, 0), min(lo + span, samples)
        if b > a:
            yield audio[:, :, a - lo:b - lo]
