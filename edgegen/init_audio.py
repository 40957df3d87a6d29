"""Init audio for audio-to-audio: read a file, bring it to the model's rate, channels and length.

    sr, audio = read_init_audio(Path("take.wav"))                    # [channels, n] float32, one clear error if bad
    init, level = read_init(Path("take.wav"), 0.4)                    # the CLI's --init-audio / --init-noise-level
    prepared, notes = prepare_init_audio(sr, audio, sample_rate=44100, length=524288)   # [1, 2, length]
    for note in notes: print("note:", note)                           # resampled / mono duplicated / cropped / padded

The steps are upstream stable-audio-tools' `prepare_audio`: resample to the model's rate, crop or zero-pad at the
end to the model's length (never a random crop), mono duplicated to stereo (more channels than two: the first two).
The resampler is a windowed-sinc (Hann window, 6 zero crossings, cutoff 0.99 of the lower Nyquist), the same kind and
defaults as torchaudio's `Resample` that upstream calls.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from edgegen.errors import EdgegenError

ZERO_CROSSINGS, ROLLOFF = 6, 0.99


def read_init_audio(path: Path) -> tuple[int, np.ndarray]:
    """(sample_rate, float32 [channels, n]) from an audio file soundfile can read (WAV, FLAC, OGG, ...)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise EdgegenError(f"--init-audio {path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [n, channels]
    except Exception as exc:
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise EdgegenError(f"--init-audio {path} is not a readable audio file ({why}); give a WAV, FLAC or OGG file") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise EdgegenError(f"--init-audio {path} holds no samples; give a recording of at least one sample")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise EdgegenError(f"--init-audio {path} holds {bad} non-finite sample(s) (NaN or inf)")
    return int(sr), np.ascontiguousarray(data.T)


def read_init(path: Path | None, level: float | None) -> tuple[tuple[int, np.ndarray] | None, float]:
    """--init-audio and --init-noise-level as given: (sample_rate, audio) of the file (None without one) and the
    checked S (0.5 when not given; 1, text-to-audio, without a file). One error line for a bad file or S, or for S
    alone."""
    if path is None:
        if level is not None:
            raise EdgegenError("--init-noise-level applies to audio-to-audio: give --init-audio FILE too")
        return None, 1.0
    level = check_init_noise_level(0.5 if level is None else level)
    return read_init_audio(path), level


def check_init_noise_level(level: float) -> float:
    """S in (0, 1]: the noise level sampling starts from (1 = text-to-audio, the init audio fully replaced)."""
    if not (isinstance(level, (int, float)) and math.isfinite(level) and 0.0 < level <= 1.0):
        raise EdgegenError(f"--init-noise-level {level} is out of range: give S with 0 < S <= 1 "
                           "(small S stays close to the init audio, 1 ignores it)")
    return float(level)


def audio_to_audio_level(level: float, init_audio) -> float:
    """S checked (`check_init_noise_level`); S < 1 without init audio is an error (it would mean nothing)."""
    level = check_init_noise_level(level)
    if init_audio is None and level != 1.0:
        raise EdgegenError(f"init_noise_level {level} needs init audio (--init-audio FILE)")
    return level


def resample(audio: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """[..., n] at `orig` Hz -> [..., ceil(n * new / orig)] at `new` Hz, band-limited (windowed sinc).

    Output sample m sits at input position m * orig / new; it sums the input samples within the filter's
    ZERO_CROSSINGS zero crossings of it (the Hann window is 0 beyond), so the work and memory grow with the output
    length times the filter width, whatever the rates (44101 -> 44100 Hz costs what 22050 -> 44100 Hz does)."""
    import torch

    if orig == new:
        return audio
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    cutoff = min(orig, new) * ROLLOFF  # in units of the reduced rates
    reach = math.ceil(ZERO_CROSSINGS * orig / cutoff)  # input samples on each side that can be within the window
    n = audio.shape[-1]
    m = torch.arange(math.ceil(new * n / orig), dtype=torch.int64)
    k = (m * orig // new)[:, None] + torch.arange(-reach, reach + 2, dtype=torch.int64)[None, :]  # [out, taps]
    t = ((k * new - m[:, None] * orig).double() / new * cutoff / orig).clamp(-ZERO_CROSSINGS, ZERO_CROSSINGS)
    window = torch.cos(t * math.pi / ZERO_CROSSINGS / 2) ** 2
    weights = (torch.sinc(t) * window * cutoff / orig).to(audio.dtype)
    inside = (k >= 0) & (k < n)
    x = audio.reshape(-1, n)[:, k.clamp(0, n - 1)] * inside.to(audio.dtype)  # [B, out, taps], zero outside
    return (x * weights).sum(-1).reshape(*audio.shape[:-1], -1)


def prepare_init_audio(sr: int, audio: np.ndarray | torch.Tensor, *, sample_rate: int, length: int,
                       channels: int = 2) -> tuple[torch.Tensor, list[str]]:
    """float32 [1, channels, length] at `sample_rate`, and one note per change made (for the user)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2 or x.shape[-1] == 0:
        raise EdgegenError(f"init audio must be [channels, samples] with at least one sample, got {list(x.shape)}")
    notes = []
    if sr != sample_rate:
        x = resample(x, sr, sample_rate)
        notes.append(f"init audio resampled from {sr} Hz to the model's {sample_rate} Hz")
    n = x.shape[-1]
    if n > length:
        notes.append(f"init audio cropped from {n / sample_rate:.2f} s to the model's {length / sample_rate:.2f} s "
                     "(its start is kept)")
        x = x[:, :length]
    elif n < length:
        notes.append(f"init audio ({n / sample_rate:.2f} s) padded with silence to the model's {length / sample_rate:.2f} s")
        x = F.pad(x, (0, length - n))
    if x.shape[0] == 1 and channels > 1:
        notes.append("mono init audio duplicated to stereo")
        x = x.repeat(channels, 1)
    elif x.shape[0] > channels:
        notes.append(f"init audio has {x.shape[0]} channels; the first {channels} are used")
        x = x[:channels]
    return x[None].contiguous(), notes
