"""fluidsynth + a General MIDI SoundFont -> stereo 44.1 kHz audio, loudness-normalised, written as 16-bit WAV.

    tools = find_tools(soundfont=None)          # one EdgegenError line naming the Debian package when missing
    audio = render(tools, notes, channels, samples=262144)   # float32 [2, samples]
    audio = normalise(audio, target_db=-20.0)   # K-weighted, gated loudness (BS.1770-like), peak <= -1 dBFS
    write_wav(path, audio)                      # atomic; bytes depend only on the samples

fluidsynth renders to 32-bit float in a temporary folder (its WAV header carries a time stamp, so its file is never
kept); the samples are cropped or padded to the clip's length, normalised here and written with Python's `wave`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.common import atomic_path
from edgegen.corpus.midi import Channel, Note, write_midi
from edgegen.errors import EdgegenError

SAMPLE_RATE = 44100
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTALL = "install it with `sudo apt-get install fluidsynth fluid-soundfont-gm` (or run scripts/setup.sh as root)"
PEAK_CEILING = 10 ** (-1 / 20)  # -1 dBFS


@dataclass(frozen=True)
class Tools:
    fluidsynth: str
    soundfont: Path
    version: str


def find_tools(soundfont: Path | None = None) -> Tools:
    """The synthesizer and SoundFont, or one EdgegenError saying what to install. Nothing is downloaded."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise EdgegenError(f"the corpus needs the fluidsynth synthesizer, which is not on PATH: {INSTALL}")
    sf2 = Path(soundfont or os.environ.get("EDGEGEN_SOUNDFONT") or DEFAULT_SOUNDFONT)
    if not sf2.is_file():
        raise EdgegenError(f"SoundFont {sf2} not found: {INSTALL}, or give --soundfont FILE.sf2")
    with open(sf2, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise EdgegenError(f"{sf2} is not a SoundFont 2 file (no RIFF sfbk header): {INSTALL}")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EdgegenError(f"cannot run {exe} ({exc}): {INSTALL}") from None
    version = next((line.split()[-1] for line in out.splitlines() if "version" in line.lower()), "unknown")
    return Tools(exe, sf2, version)


def render(tools: Tools, notes: list[Note], channels: list[Channel], *, samples: int, gain: float = 0.5) -> np.ndarray:
    """float32 [2, samples]: the notes rendered from t = 0, cropped (or zero-padded) to `samples`."""
    seconds = samples / SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="edgegen-corpus-") as tmp:
        mid, wav = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        write_midi(mid, notes, channels, end=seconds + 0.05)
        cmd = [tools.fluidsynth, "-ni", "-q", "-r", str(SAMPLE_RATE), "-g", str(gain), "-O", "float", "-T", "wav",
               "-o", "synth.cpu-cores=1", "-o", "synth.chorus.active=0", "-F", str(wav), str(tools.soundfont),
               str(mid)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not wav.is_file():
            why = (proc.stderr.strip().splitlines() or ["no output file"])[-1]
            raise EdgegenError(f"fluidsynth failed to render a clip (exit {proc.returncode}): {why}")
        audio = read_float_wav(wav)
    if audio.shape[1] >= samples:
        return np.ascontiguousarray(audio[:, :samples])
    return np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))


def read_float_wav(path: Path) -> np.ndarray:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise EdgegenError(f"fluidsynth rendered at {sr} Hz, not {SAMPLE_RATE}")
    data = data.T
    return np.repeat(data, 2, axis=0) if data.shape[0] == 1 else data[:2]


def _biquad_mag2(freqs: np.ndarray, b: tuple, a: tuple, fs: int) -> np.ndarray:
    z = np.exp(-1j * 2 * np.pi * freqs / fs)
    return np.abs((b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)) ** 2


def _k_weight(freqs: np.ndarray, fs: int) -> np.ndarray:
    """|H|^2 of BS.1770's K-weighting (a +4 dB shelf above ~1.5 kHz and a 38 Hz high-pass), RBJ biquads."""
    w, q, a_ = 2 * np.pi * 1500 / fs, 1 / np.sqrt(2), 10 ** (4 / 40)
    alpha, c = np.sin(w) / (2 * q), np.cos(w)
    shelf_b = (a_ * ((a_ + 1) + (a_ - 1) * c + 2 * np.sqrt(a_) * alpha), -2 * a_ * ((a_ - 1) + (a_ + 1) * c),
               a_ * ((a_ + 1) + (a_ - 1) * c - 2 * np.sqrt(a_) * alpha))
    shelf_a = ((a_ + 1) - (a_ - 1) * c + 2 * np.sqrt(a_) * alpha, 2 * ((a_ - 1) - (a_ + 1) * c),
               (a_ + 1) - (a_ - 1) * c - 2 * np.sqrt(a_) * alpha)
    w, q = 2 * np.pi * 38 / fs, 0.5
    alpha, c = np.sin(w) / (2 * q), np.cos(w)
    hp_b = ((1 + c) / 2, -(1 + c), (1 + c) / 2)
    hp_a = (1 + alpha, -2 * c, 1 - alpha)
    return _biquad_mag2(freqs, shelf_b, shelf_a, fs) * _biquad_mag2(freqs, hp_b, hp_a, fs)


def loudness_db(audio: np.ndarray, fs: int = SAMPLE_RATE) -> float:
    """Integrated loudness in dB (LUFS-like): K-weighted (zero-phase, by FFT), 400 ms blocks with 75 % overlap,
    absolute gate -70 dB and relative gate -10 dB. -inf for silence."""
    x = np.asarray(audio, dtype=np.float64)
    spec = np.fft.rfft(x, axis=-1)
    spec *= np.sqrt(_k_weight(np.fft.rfftfreq(x.shape[-1], 1 / fs), fs))
    y = np.fft.irfft(spec, n=x.shape[-1], axis=-1)
    block, hop = int(0.4 * fs), int(0.1 * fs)
    if y.shape[-1] < block:
        block = hop = y.shape[-1]
    power = np.array([np.mean(y[:, s:s + block] ** 2, axis=-1).sum()
                      for s in range(0, y.shape[-1] - block + 1, hop)])
    db = -0.691 + 10 * np.log10(np.maximum(power, 1e-20))
    keep = power[db > -70]
    if keep.size == 0:
        return float("-inf")
    rel = -0.691 + 10 * np.log10(keep.mean()) - 10
    keep = keep[(-0.691 + 10 * np.log10(keep)) > rel]
    return float(-0.691 + 10 * np.log10(keep.mean()))


def normalise(audio: np.ndarray, *, target_db: float) -> np.ndarray:
    """Gain to `target_db` loudness, lowered if needed so the peak stays at or below -1 dBFS. Silence stays."""
    level = loudness_db(audio)
    if not np.isfinite(level):
        return audio.astype(np.float32)
    gain = 10 ** ((target_db - level) / 20)
    peak = float(np.abs(audio).max())
    if peak * gain > PEAK_CEILING:
        gain = PEAK_CEILING / peak
    return (audio.astype(np.float64) * gain).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV, rounded to nearest, written atomically (temp name, then rename)."""
    pcm = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32767), -32768, 32767).astype("<i2")
    with atomic_path(Path(path)) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(pcm.shape[0])
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(np.ascontiguousarray(pcm.T).tobytes())
