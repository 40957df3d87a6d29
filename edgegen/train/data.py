"""Training data: captioned audio folders -> a cached tensor file of VAE latents and text conditioning.

    records = read_captions(Path("data/captions.jsonl"))         # [Record(path, caption, seconds, label)]
    report = build_cache(pipe=pipe, records=records, root=Path("data"), out=Path("cache.safetensors"))
    data = LatentData.load(Path("cache.safetensors"))
    x0, cross, glob = data.batch(idx)                            # [B, 64, T], [B, 65, C], [B, C]

Captions are CSV (header `path,caption[,seconds][,label]`) or JSONL (one object per line with the same
keys); `path` is relative to the captions file's folder and `seconds` (optional) is a duration > 0. Every
field is checked when the file is read; a bad one is an error naming its line. Each audio file is read, mixed
to stereo, resampled to the model's rate (band-limited, by FFT), cropped or zero-padded to `sample_size`, and
encoded once with the VAE encoder (the bottleneck mean). T5 is frozen, so the conditioning (cross [65, C],
global [C]) is computed once per distinct (caption, seconds). Unreadable, empty and silent files are skipped
and listed in the report (also written next to the cache as `<cache>.report.json`); they never stop the run.
The cache is a safetensors file (edgegen.train.store): latents and conditioning as tensors, captions and
labels as JSON in its header; loading it never unpickles anything.

`write_synthetic` makes a captioned toy corpus (tones, chords, noise bursts, rhythms) so the whole loop runs
with no download; its `label` field feeds the evidence benchmark's classifier.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgegen.common import num_samples, write_text_atomic
from edgegen.errors import EdgegenError
from edgegen.train.loop import new_folder
from edgegen.train.store import CACHE, load_tree, save_tree

SILENCE_PEAK = 1e-4  # a clip whose peak |sample| is below this is "silent"


@dataclass(frozen=True)
class Record:
    path: str
    caption: str
    seconds: float | None = None
    label: str | None = None


@dataclass
class CacheReport:
    encoded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        lines = [f"encoded {self.encoded} clips, skipped {len(self.skipped)}"]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


_KEYS = {"path", "caption", "seconds", "label"}


def read_captions(path: Path) -> list[Record]:
    """Records from a .csv or .jsonl captions file; malformed rows raise with the line number."""
    path = Path(path)
    if not path.is_file():
        raise EdgegenError(f"captions file not found: {path} (expected .csv or .jsonl with path,caption)")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise EdgegenError(f"{path}:{n}: not valid JSON ({exc})") from None
    elif path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = [(n, row) for n, row in enumerate(csv.DictReader(f), 2)]
    else:
        raise EdgegenError(f"{path}: captions must be .csv or .jsonl, not {path.suffix or 'no suffix'}")
    out = [_record(row, f"{path}:{n}") for n, row in rows]
    if not out:
        raise EdgegenError(f"{path}: no records")
    return out


def _record(row, where: str) -> Record:
    """One checked captions row: path and caption non-empty text, seconds a finite duration > 0 (or absent)."""
    if not isinstance(row, dict):
        raise EdgegenError(f"{where}: expected an object with path and caption, got {type(row).__name__}")
    if unknown := set(row) - _KEYS:  # a CSV row longer than its header has the key None
        raise EdgegenError(f"{where}: unknown fields {sorted(map(str, unknown))} (allowed: {sorted(_KEYS)})")
    for key in ("path", "caption", "label"):
        value = row.get(key)
        if key != "label" and value in (None, ""):
            raise EdgegenError(f"{where}: each row needs a non-empty '{key}'")
        if value is not None and not isinstance(value, str):
            raise EdgegenError(f"{where}: '{key}' must be text, got {json.dumps(value)}")
    raw, seconds = row.get("seconds"), None
    if raw not in (None, ""):
        try:
            seconds = float(raw) if isinstance(raw, str) or type(raw) in (int, float) else None
        except ValueError:
            pass
        if seconds is None or not (math.isfinite(seconds) and seconds > 0):
            shown = raw if isinstance(raw, str) else json.dumps(raw)
            raise EdgegenError(f"{where}: seconds {shown} is not allowed: give a duration > 0 in seconds, "
                               "or leave it out for the model's full length")
    return Record(path=row["path"], caption=row["caption"], seconds=seconds, label=row.get("label") or None)


def resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    """audio [C, n] at `src` Hz -> [C, round(n * dst / src)] at `dst` Hz (FFT; band-limited, periodic)."""
    if src == dst:
        return audio
    n = audio.shape[-1]
    m = max(1, round(n * dst / src))
    spec = np.fft.rfft(audio, axis=-1)
    keep = min(spec.shape[-1], m // 2 + 1)
    out = np.zeros(audio.shape[:-1] + (m // 2 + 1,), dtype=np.complex128)
    out[..., :keep] = spec[..., :keep]
    return (np.fft.irfft(out, n=m, axis=-1) * (m / n)).astype(np.float32)


def read_clip(path: Path, *, sample_rate: int) -> tuple[np.ndarray | None, str]:
    """(stereo float32 [2, n] at `sample_rate`, "") or (None, reason) for an unreadable or empty file."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (n, C)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, OSError ... by format
        return None, f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if data.shape[0] == 0:
        return None, "empty"
    audio = data.T
    audio = np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio[:2]
    return resample(audio, sr, sample_rate), ""


def unusable(audio: np.ndarray) -> str:
    """Why `audio` cannot be trained on (non-finite or silent), or ""."""
    if not np.isfinite(audio).all():
        return "non-finite samples"
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        return f"silent (peak < {SILENCE_PEAK:g})"
    return ""


def load_clip(path: Path, *, sample_rate: int, length: int) -> tuple[np.ndarray | None, str]:
    """(stereo float32 [2, length], "") or (None, reason) for an unreadable, empty or silent file."""
    audio, why = read_clip(path, sample_rate=sample_rate)
    if audio is None:
        return None, why
    audio = audio[:, :length] if audio.shape[1] >= length else np.pad(audio, ((0, 0), (0, length - audio.shape[1])))
    if why := unusable(audio):
        return None, why
    return np.ascontiguousarray(audio, dtype=np.float32), ""


@torch.no_grad()
def build_cache(*, pipe, records: list[Record], root: Path, out: Path, batch_size: int = 16) -> CacheReport:
    """Encode every readable record with `pipe`'s VAE encoder and T5; write `out` (safetensors) + report."""
    out = Path(out)
    if out.is_dir():
        raise EdgegenError(f"--output {out} is a folder; give the cache file to write, e.g. {out / 'cache.safetensors'}")
    length, sr = pipe.config.sample_size, pipe.sample_rate
    report, latents, keep = CacheReport(), [], []
    pending: list[np.ndarray] = []

    def flush():
        if pending:
            latents.append(pipe.encode_audio(torch.from_numpy(np.stack(pending))))  # (b, 64, T)
            pending.clear()

    for rec in records:
        audio, why = load_clip(Path(root) / rec.path, sample_rate=sr, length=length)
        if audio is None:
            report.skipped.append((rec.path, why))
            continue
        pending.append(audio)
        keep.append(rec)
        if len(pending) == batch_size:
            flush()
    flush()
    if not keep:
        raise EdgegenError(f"no usable audio among {len(records)} records:\n{report.summary()}")
    report.encoded = len(keep)
    max_s = pipe.max_seconds
    keys = sorted({(r.caption, min(r.seconds or max_s, max_s)) for r in keep})
    index = {k: i for i, k in enumerate(keys)}
    cross, glob = conditioning(pipe, [k[0] for k in keys], [k[1] for k in keys])
    cache = {
        "latents": torch.cat(latents),                                                 # (N, 64, T)
        "cond_index": torch.tensor([index[(r.caption, min(r.seconds or max_s, max_s))] for r in keep]),  # (N,)
        "cross": cross, "glob": glob,                                                  # (U, 65, C), (U, C)
        "captions": [k[0] for k in keys], "seconds": [k[1] for k in keys],
        "labels": [r.label for r in keep], "paths": [r.path for r in keep],
    }
    with new_folder(out.parent):
        save_tree(out, cache, kind=CACHE)
    write_text_atomic(Path(str(out) + ".report.json"), json.dumps(asdict(report), indent=2) + "\n")
    return report


@torch.no_grad()
def conditioning(pipe, captions: list[str], seconds: list[float], batch_size: int = 64):
    """Frozen text conditioning: cross [U, 65, C], global [U, C] for each (caption, seconds)."""
    cross, glob = [], []
    for i in range(0, len(captions), batch_size):
        ids, mask = pipe.tokenize(captions[i:i + batch_size])
        c, g = pipe.text_encoder(ids, mask, torch.tensor(seconds[i:i + batch_size], dtype=torch.float32))
        cross.append(c)
        glob.append(g)
    return torch.cat(cross), torch.cat(glob)


class LatentData:
    """The cached training set; `batch(idx)` gathers latents and their conditioning."""

    def __init__(self, cache: dict):
        self.latents, self.cond_index = cache["latents"].float(), cache["cond_index"]
        self.cross, self.glob = cache["cross"].float(), cache["glob"].float()
        self.captions, self.labels = cache["captions"], cache["labels"]

    @classmethod
    def load(cls, path: Path) -> "LatentData":
        """The cache at `path` (written by build_cache); a missing, old-format or inconsistent file is one error."""
        remedy = "(re)build it with `edgegen train cache`"
        cache = load_tree(path, kind=CACHE, what="latent cache", remedy=remedy)
        if problem := _cache_problem(cache):
            raise EdgegenError(f"{path} is a damaged latent cache ({problem}); {remedy}")
        return cls(cache)

    def __len__(self) -> int:
        return len(self.latents)

    def check_fits(self, pipe, path: Path) -> None:
        """The latents must have the shape `pipe`'s DiT trains on."""
        need = (pipe.config.dit.io_channels, pipe.latent_length)
        if tuple(self.latents.shape[1:]) != need:
            raise EdgegenError(f"{path} holds latents {list(self.latents.shape[1:])}, the model needs {list(need)}: "
                               "rebuild the cache with this model (`edgegen train cache`)")
        if self.cross.shape[-1] != pipe.config.cond_dim:
            raise EdgegenError(f"{path} holds text conditioning of width {self.cross.shape[-1]}, the model needs "
                               f"{pipe.config.cond_dim}: rebuild the cache with this model (`edgegen train cache`)")

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.cond_index[idx]
        return self.latents[idx], self.cross[c], self.glob[c]

    def groups(self, idx: torch.Tensor, *, by: str) -> torch.Tensor:
        """Group ids [B] of the items `idx`: by "same_label" their class label (an unlabelled item is grouped
        with its own prompt only), otherwise their prompt (caption + seconds)."""
        prompt = self.cond_index[idx]
        if by != "same_label":
            return prompt
        names = sorted({lab for lab in self.labels if lab is not None})
        return torch.tensor([names.index(self.labels[i]) if self.labels[i] is not None else -1 - int(p)
                             for i, p in zip(idx.tolist(), prompt.tolist())])


def _cache_problem(cache) -> str | None:
    """What is inconsistent in a loaded cache tree, or None."""
    if not isinstance(cache, dict):
        return "not a mapping"
    t = {k: cache.get(k) for k in ("latents", "cond_index", "cross", "glob")}
    if bad := [k for k, v in t.items() if not isinstance(v, torch.Tensor)]:
        return f"missing tensor {bad[0]}"
    lists = {k: cache.get(k) for k in ("captions", "seconds", "labels", "paths")}
    if bad := [k for k, v in lists.items() if not isinstance(v, list)]:
        return f"missing list {bad[0]}"
    n, u = len(t["latents"]), len(t["cross"])
    if not (t["latents"].ndim == 3 and n >= 1 and t["latents"].is_floating_point()):
        return f"latents {list(t['latents'].shape)} are not N x channels x frames floats"
    if not (t["cross"].ndim == 3 and t["glob"].ndim == 2 and len(t["glob"]) == u >= 1
            and t["cross"].is_floating_point() and t["glob"].is_floating_point()):
        return f"conditioning cross {list(t['cross'].shape)} / global {list(t['glob'].shape)} do not match"
    idx = t["cond_index"]
    if idx.dtype != torch.int64 or idx.shape != (n,) or int(idx.min()) < 0 or int(idx.max()) >= u:
        return f"cond_index is not {n} indices into {u} conditionings"
    if len(lists["captions"]) != u or len(lists["seconds"]) != u or len(lists["labels"]) != n \
            or len(lists["paths"]) != n:
        return "captions / seconds / labels / paths do not match the tensors' lengths"
    for k in ("latents", "cross", "glob"):
        if not bool(torch.isfinite(t[k]).all()):
            return f"{k} hold NaN or inf"
    return None


# --- synthetic captioned audio ----------------------------------------------------------------------

_NOTES = {"C": 261.63, "E": 329.63, "G": 392.0, "A": 440.0, "D#": 311.13}
# label -> caption templates; the evidence classifier predicts the label
SYNTH_CLASSES = {
    "low_tone": ["a low sine tone", "a deep steady hum", "low pitched pure tone"],
    "high_tone": ["a high sine tone", "a bright whistle", "high pitched pure tone"],
    "major_chord": ["a major chord", "a happy major triad", "bright major chord sustained"],
    "minor_chord": ["a minor chord", "a sad minor triad", "dark minor chord sustained"],
    "noise_burst": ["a burst of white noise", "short noise hit", "a hiss of noise"],
    "fast_clicks": ["fast rhythmic clicks", "rapid ticking beat", "a quick click rhythm"],
    "slow_clicks": ["slow rhythmic clicks", "a slow steady beat", "sparse ticking"],
    "sweep": ["a rising frequency sweep", "an upward chirp", "a siren going up"],
}


def synth_clip(label: str, *, sample_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One stereo float32 [2, n] example of `label` with random pitch, timing, gain and pan."""
    n = num_samples(seconds, sample_rate)
    t = np.arange(n) / sample_rate
    detune = 2 ** (rng.uniform(-2, 2) / 12)

    def tone(f):
        return np.sin(2 * np.pi * f * detune * t + rng.uniform(0, 2 * np.pi))

    if label == "low_tone":
        x = tone(rng.uniform(80, 160))
    elif label == "high_tone":
        x = tone(rng.uniform(1500, 3000))
    elif label in ("major_chord", "minor_chord"):
        third = _NOTES["E"] if label == "major_chord" else _NOTES["D#"]
        x = (tone(_NOTES["C"]) + tone(third) + tone(_NOTES["G"])) / 3
    elif label == "noise_burst":
        x = np.zeros(n)
        start, dur = int(rng.uniform(0, 0.5) * n), int(rng.uniform(0.15, 0.4) * n)
        x[start:start + dur] = rng.standard_normal(len(x[start:start + dur])) * 0.7
    elif label in ("fast_clicks", "slow_clicks"):
        period = rng.uniform(0.05, 0.08) if label == "fast_clicks" else rng.uniform(0.2, 0.3)
        phase = ((t + rng.uniform(0, period)) % period) / period
        x = np.exp(-phase * 40) * np.sin(2 * np.pi * 1000 * t)
    elif label == "sweep":
        f0, f1 = rng.uniform(200, 400), rng.uniform(2000, 4000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
    else:
        raise EdgegenError(f"unknown synthetic class {label!r}; choose from {', '.join(SYNTH_CLASSES)}")
    gain, pan = rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.8)
    return (gain * np.stack([x * (1 - pan), x * pan]) * 2).astype(np.float32)


def write_synthetic(out_dir: Path, *, count: int, sample_rate: int, seconds: float, seed: int = 0) -> Path:
    """`count` WAVs (classes round-robin) + captions.jsonl in `out_dir`; returns the captions path."""
    import soundfile as sf

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgegenError(f"--output {out_dir} is a file; give a folder for the clips and captions.jsonl")
    rng = np.random.default_rng(seed)
    labels = list(SYNTH_CLASSES)
    lines = []
    with new_folder(out_dir):
        for i in range(count):
            label = labels[i % len(labels)]
            audio = synth_clip(label, sample_rate=sample_rate, seconds=seconds, rng=rng)
            name = f"clip{i:05d}.wav"
            sf.write(str(out_dir / name), audio.T, sample_rate, subtype="PCM_16")
            caption = SYNTH_CLASSES[label][int(rng.integers(len(SYNTH_CLASSES[label])))]
            lines.append(json.dumps({"path": name, "caption": caption, "seconds": seconds, "label": label}))
        captions = out_dir / "captions.jsonl"
        captions.write_text("\n".join(lines) + "\n")  # last: a corpus with captions is complete
    return captions
