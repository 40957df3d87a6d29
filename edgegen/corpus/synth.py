"""libfluidsynth + a General MIDI SoundFont -> stereo 44.1 kHz audio, loudness-normalised, written as 16-bit WAV.

    tools = find_tools(soundfont=None)          # one EdgegenError line naming the Debian package when missing
    audio = render(tools, notes, channels, samples=262144)   # float32 [2, samples]
    audio = normalise(audio, target_db=-20.0)   # K-weighted, gated loudness (BS.1770-like), peak <= -1 dBFS
    write_wav(path, audio)                      # atomic; bytes depend only on the samples

The synthesizer is Debian fluidsynth's library (libfluidsynth.so.3), driven through ctypes: every clip gets a fresh
synthesizer (so a clip never depends on the one before it: a reset synthesizer keeps reverb state and renders other
bytes), to which the SoundFont that one anchor synthesizer loaded once per process is added (loading it per clip
costs 0.2 s; the two give identical bytes), and removed again before it is deleted. Events are applied at their
sample positions (fluidsynth quantises them to its 64-sample blocks); chorus is off, reverb at its defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.common import atomic_path
from edgegen.corpus.midi import Channel, Note
from edgegen.errors import EdgegenError

SAMPLE_RATE = 44100
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTALL = "install it with `sudo apt-get install fluidsynth fluid-soundfont-gm` (or run scripts/setup.sh as root)"
PEAK_CEILING = 10 ** (-1 / 20)  # -1 dBFS
GAIN = 0.5


@dataclass(frozen=True)
class Tools:
    lib: object          # the ctypes library
    soundfont: Path
    version: str
    sfont: int           # the loaded SoundFont (a fluid_sfont_t owned by the anchor synthesizer)


_LOADED: dict[tuple[str, str], Tools] = {}
_ANCHORS: list = []  # (settings, synth) kept alive so the SoundFont's samples stay cached


def _library(path: str | None):
    name = path or os.environ.get("EDGEGEN_FLUIDSYNTH_LIB") or ctypes.util.find_library("fluidsynth") \
        or "libfluidsynth.so.3"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise EdgegenError(f"the corpus needs the fluidsynth synthesizer library ({name}), which is not "
                           f"installed: {INSTALL}") from None
    vp, i, d, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p
    sigs = {"new_fluid_settings": ([], vp), "delete_fluid_settings": ([vp], None),
            "fluid_settings_setnum": ([vp, cp, d], i), "fluid_settings_setint": ([vp, cp, i], i),
            "new_fluid_synth": ([vp], vp), "delete_fluid_synth": ([vp], None),
            "fluid_synth_sfload": ([vp, cp, i], i), "fluid_synth_program_change": ([vp, i, i], i),
            "fluid_synth_cc": ([vp, i, i, i], i), "fluid_synth_noteon": ([vp, i, i, i], i),
            "fluid_synth_noteoff": ([vp, i, i], i), "fluid_version_str": ([], cp),
            "fluid_synth_write_float": ([vp, i, vp, i, i, vp, i, i], i), "fluid_synth_get_sfont": ([vp, i], vp),
            "fluid_synth_add_sfont": ([vp, vp], i), "fluid_synth_remove_sfont": ([vp, vp], i),
            "fluid_set_log_function": ([i, vp, vp], vp)}
    for fn, (args, res) in sigs.items():
        f = getattr(lib, fn)
        f.argtypes, f.restype = args, res
    lib.fluid_set_log_function(2, None, None)  # warnings (e.g. "no preset" as a clip's SoundFont is removed)
    return lib


def _settings(lib):
    settings = lib.new_fluid_settings()
    lib.fluid_settings_setnum(settings, b"synth.sample-rate", float(SAMPLE_RATE))
    lib.fluid_settings_setnum(settings, b"synth.gain", GAIN)
    lib.fluid_settings_setint(settings, b"synth.chorus.active", 0)
    lib.fluid_settings_setint(settings, b"synth.cpu-cores", 1)
    return settings


def _anchor(lib, soundfont: Path) -> int:
    """Load the SoundFont into a synthesizer kept for the whole process; returns its fluid_sfont_t."""
    settings = _settings(lib)
    synth = lib.new_fluid_synth(settings)
    if not synth or lib.fluid_synth_sfload(synth, str(soundfont).encode(), 1) < 0:
        raise EdgegenError(f"fluidsynth cannot load the SoundFont {soundfont}: {INSTALL}")
    _ANCHORS.append((settings, synth))
    return lib.fluid_synth_get_sfont(synth, 0)


def find_tools(soundfont: Path | None = None, library: str | None = None) -> Tools:
    """The synthesizer and SoundFont, or one EdgegenError saying what to install. Nothing is downloaded."""
    sf2 = Path(soundfont or os.environ.get("EDGEGEN_SOUNDFONT") or DEFAULT_SOUNDFONT)
    if not sf2.is_file():
        raise EdgegenError(f"SoundFont {sf2} not found: {INSTALL}, or give --soundfont FILE.sf2")
    with open(sf2, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise EdgegenError(f"{sf2} is not a SoundFont 2 file (no RIFF sfbk header): {INSTALL}")
    key = (library or os.environ.get("EDGEGEN_FLUIDSYNTH_LIB") or "", str(sf2.resolve()))
    if key not in _LOADED:
        lib = _library(library)
        _LOADED[key] = Tools(lib, sf2, lib.fluid_version_str().decode(), _anchor(lib, sf2))
    return _LOADED[key]


def render(tools: Tools, notes: list[Note], channels: list[Channel], *, samples: int) -> np.ndarray:
    """float32 [2, samples]: the notes rendered from t = 0 by a fresh synthesizer; later events are dropped."""
    lib = tools.lib
    events = []  # (sample, order, function, args): setup, then note-offs before note-ons at the same sample
    for c in channels:
        for cc, value in ((7, c.volume), (10, c.pan), (91, c.reverb), (93, 0)):
            events.append((0, 0, lib.fluid_synth_cc, (c.ch, cc, value)))
        events.append((0, 1, lib.fluid_synth_program_change, (c.ch, c.program)))
    for n in notes:
        on = max(0, round(n.t * SAMPLE_RATE))
        off = max(on + 1, round((n.t + n.dur) * SAMPLE_RATE))
        pitch, vel = min(127, max(0, n.pitch)), min(127, max(1, n.vel))
        if on < samples:
            events.append((on, 3, lib.fluid_synth_noteon, (n.ch, pitch, vel)))
        if off < samples:
            events.append((off, 2, lib.fluid_synth_noteoff, (n.ch, pitch)))
    events.sort(key=lambda e: (e[0], e[1], e[3]))
    out = np.zeros((2, samples), dtype=np.float32)
    left, right = out[0].ctypes.data, out[1].ctypes.data
    settings = _settings(lib)
    synth = lib.new_fluid_synth(settings)
    if not synth or lib.fluid_synth_add_sfont(synth, tools.sfont) < 0:
        raise EdgegenError("fluidsynth could not create a synthesizer; nothing was written")
    try:
        pos = 0
        for at, _, fn, args in events:
            if at > pos:
                lib.fluid_synth_write_float(synth, at - pos, left, pos, 1, right, pos, 1)
                pos = at
            fn(synth, *args)
        if samples > pos:
            lib.fluid_synth_write_float(synth, samples - pos, left, pos, 1, right, pos, 1)
    finally:
        lib.fluid_synth_remove_sfont(synth, tools.sfont)  # the anchor owns it: never freed with this synthesizer
        lib.delete_fluid_synth(synth)
        lib.delete_fluid_settings(settings)
    if not np.isfinite(out).all():
        raise EdgegenError("fluidsynth rendered non-finite samples; nothing was written")
    return out


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
