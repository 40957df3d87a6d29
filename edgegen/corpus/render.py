"""Render the planned corpus into a state folder, resumably, and write captions, labels and the checksum list.

Layout of the state folder (default ~/.cache/edgegen/corpus/seed-N):

    config.json                       seed, clip length, counts, synthesizer / SoundFont / music21 versions
    <split>/clips/<kind>-NNNN.wav     16-bit stereo 44.1 kHz, one per clip (split: train, validation, held_out)
    <split>/captions.jsonl            path, caption, seconds, label: what `edgegen train cache` reads
    <split>/captions_held_out_phrasing.jsonl   (validation, held_out) the same clips in held-out phrasings
    <split>/labels.jsonl              path + every label (family, kind, tempo band, dynamics, instrument, bpm, ...)
    summary.json                      clips and hours per split / kind / family / label
    SHA256SUMS                        sha256 of every file above (sha256sum -c format), written last
    .rendered.jsonl, render-log.jsonl resume ledger and wall times (not checksummed)

A clip whose file exists with the checksum and parameters its ledger line records is skipped, so an interrupted
render resumes. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgegen.common import sha256_file, write_text_atomic
from edgegen.corpus import patterns as pat
from edgegen.corpus import scores
from edgegen.corpus.plan import DEFAULT_CLIP_SAMPLES, DEFAULT_COUNTS, SPLITS, Item, build_plan
from edgegen.corpus.synth import SAMPLE_RATE, Tools, find_tools, normalise, render, write_wav
from edgegen.errors import EdgegenError

CHECKSUMS = "SHA256SUMS"
COMMITTED = Path(__file__).resolve().parent.parent / "assets" / "corpus-seed-0.sha256"


def default_root(seed: int) -> Path:
    return Path.home() / ".cache" / "edgegen" / "corpus" / f"seed-{seed}"


def clip_samples_for(seconds: float) -> int:
    """A clip length in seconds -> samples, rounded to whole 2048-sample latent frames (at least one)."""
    if not (np.isfinite(seconds) and seconds > 0):
        raise EdgegenError(f"--clip-seconds {seconds}: give a duration > 0")
    return max(1, round(seconds * SAMPLE_RATE / 2048)) * 2048


def render_item(tools: Tools, item: Item, clip_samples: int) -> np.ndarray:
    """float32 [2, clip_samples], loudness-normalised for the clip's dynamic."""
    p, length = item.params, clip_samples / SAMPLE_RATE
    rng = np.random.default_rng(p.get("window_seed") or p["pattern_seed"])
    if "piece" in p:
        piece = scores.load_piece(p["piece"])
        notes, channels = scores.piece_notes(piece, start=p["start"], bpm=p["bpm"], seconds=length,
                                             programs=p["programs"], velocity=pat.VELOCITY[p["dyn"]],
                                             pitch_shift=p["shifts"], rng=rng)
    elif item.kind == "drum loop":
        notes, channels = pat.drum_loop(style=p["style"], kit_program=p["kit_program"], bpm=p["bpm"], dyn=p["dyn"],
                                        length=length, rng=rng)
    elif item.kind == "single note":
        notes, channels = pat.single_note(instrument=p["instrument"], pitch=p["pitch"], dyn=p["dyn"],
                                          hold=min(p["hold"], length * 0.6), rng=rng)
    else:
        common = dict(instrument=p["instrument"], key_root=p["key_root"], mode=p["mode"],
                      progression=tuple(p["progression"]), bpm=p["bpm"], dyn=p["dyn"], length=length, rng=rng)
        if item.kind == "bass line":
            notes, channels = pat.bass_line(pattern=p["pattern"], **common)
        elif item.kind == "arpeggio":
            notes, channels = pat.arpeggio(pattern=p["pattern"], rate=p["rate"], **common)
        else:
            notes, channels = pat.chord_progression(rhythm=p["rhythm"], **common)
    audio = render(tools, notes, channels, samples=clip_samples)
    return normalise(audio, target_db=pat.LOUDNESS_DB[p["dyn"]])


class Progress:
    """'corpus: 120/1400 clips (30 skipped), 0.20 h of audio, 1.9 clips/s, ETA 11m05s' on stderr, every few s."""

    def __init__(self, total: int, clip_seconds: float, every: float = 5.0, stream=None):
        self.total, self.clip_seconds, self.every = total, clip_seconds, every
        self.done = self.skipped = 0
        self.start = self.last = time.monotonic()
        self.stream = stream or sys.stderr

    def step(self, skipped: bool) -> None:
        self.done += 1
        self.skipped += skipped
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rendered = self.done - self.skipped
            rate = rendered / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            self.stream.write(f"corpus: {self.done}/{self.total} clips ({self.skipped} already there), "
                              f"{self.done * self.clip_seconds / 3600:.2f} h of audio, {rate:.2f} clips/s, "
                              f"ETA {int(eta // 60)}m{int(eta % 60):02d}s\n")
            self.stream.flush()


def _config(seed: int, counts: dict, clip_samples: int, tools: Tools) -> dict:
    import music21

    return {"seed": seed, "clip_samples": clip_samples, "sample_rate": SAMPLE_RATE,
            "clip_seconds": round(clip_samples / SAMPLE_RATE, 6), "counts": {k: int(v) for k, v in counts.items()},
            "fluidsynth": tools.version, "soundfont": tools.soundfont.name, "music21": music21.__version__}


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows)


def write_tables(root: Path, items: list[Item], clip_seconds: float) -> list[str]:
    """captions / labels per split and summary.json; returns the paths written (relative to root)."""
    written = []
    for split in SPLITS:
        mine = [i for i in items if i.split == split]
        (root / split).mkdir(parents=True, exist_ok=True)
        rows = [{"path": f"clips/{i.id}.wav", "caption": i.caption, "seconds": clip_seconds, "label": i.label}
                for i in mine]
        files = {"captions.jsonl": rows,
                 "labels.jsonl": [dict({"path": f"clips/{i.id}.wav", "label": i.label}, **i.labels) for i in mine]}
        if split != "train":
            files["captions_held_out_phrasing.jsonl"] = [dict(r, caption=i.held_out_caption)
                                                         for r, i in zip(rows, mine)]
        for name, table in files.items():
            write_text_atomic(root / split / name, _jsonl(table))
            written.append(f"{split}/{name}")
    write_text_atomic(root / "summary.json", json.dumps(summary(items, clip_seconds), indent=1) + "\n")
    return written + ["summary.json"]


def summary(items: list[Item], clip_seconds: float) -> dict:
    def hours(counter: Counter) -> dict:
        return {k: {"clips": v, "hours": round(v * clip_seconds / 3600, 4)} for k, v in sorted(counter.items())}

    return {"clips": len(items), "hours": round(len(items) * clip_seconds / 3600, 4),
            "per_split": hours(Counter(i.split for i in items)),
            "per_kind": hours(Counter(i.kind for i in items)),
            "per_family": hours(Counter(i.labels["family"] for i in items)),
            "per_tempo_band": hours(Counter(i.labels["tempo_band"] for i in items)),
            "per_kind_family": hours(Counter(f"{i.kind} x {i.labels['family']}" for i in items)),
            "per_label": hours(Counter(i.label for i in items)),
            "pieces_per_split": {s: len({i.source for i in items if i.split == s}) for s in SPLITS}}


def _fingerprint(item: Item) -> str:
    """A digest of what the clip is made from: a ledger line with another one is rendered again."""
    return hashlib.sha256(json.dumps([item.kind, item.params], sort_keys=True).encode()).hexdigest()[:16]


def render_corpus(out: Path | None = None, *, seed: int = 0, counts: dict | None = None,
                  clip_samples: int = DEFAULT_CLIP_SAMPLES, soundfont: Path | None = None,
                  only: list[str] | None = None, progress_every: float = 5.0) -> Path:
    """Render (or finish rendering) the corpus into `out` (default: default_root(seed)); returns the folder.
    `only` restricts the render to those clip ids (verification of a sample); then no tables are written."""
    tools = find_tools(soundfont)
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    root = Path(out) if out is not None else default_root(seed)
    if root.exists() and not root.is_dir():
        raise EdgegenError(f"--output {root} is a file; give a folder for the corpus")
    config = _config(seed, counts, clip_samples, tools)
    cfg_path = root / "config.json"
    if cfg_path.is_file():
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            old = None
        if old != config:
            raise EdgegenError(f"{root} holds a corpus rendered with other settings (see {cfg_path}); give another "
                               "--output or remove that folder")
    t0 = time.monotonic()
    items = build_plan(seed=seed, counts=counts, clip_samples=clip_samples)
    plan_s = time.monotonic() - t0
    if only is not None:
        unknown = sorted(set(only) - {i.id for i in items})
        if unknown:
            raise EdgegenError(f"unknown clip id(s) {', '.join(unknown[:5])}")
        items_to_render = [i for i in items if i.id in set(only)]
    else:
        items_to_render = items
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg_path, json.dumps(config, indent=1) + "\n")
    ledger_path = root / ".rendered.jsonl"
    ledger = {}
    if ledger_path.is_file():
        for line in ledger_path.read_text().splitlines():
            try:
                row = json.loads(line)
                ledger[row["id"]] = (row["sha256"], row["params"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line from an interrupted run
    clip_seconds = clip_samples / SAMPLE_RATE
    prog = Progress(len(items_to_render), clip_seconds, every=progress_every)
    rendered = 0
    with open(ledger_path, "a") as led:
        for item in items_to_render:
            path = root / item.path
            fingerprint = _fingerprint(item)
            if path.is_file() and ledger.get(item.id) == (sha256_file(path), fingerprint):
                prog.step(skipped=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, render_item(tools, item, clip_samples))
            led.write(json.dumps({"id": item.id, "sha256": sha256_file(path), "params": fingerprint}) + "\n")
            led.flush()
            rendered += 1
            prog.step(skipped=False)
    log = {"seed": seed, "clips": len(items_to_render), "rendered": rendered, "plan_s": round(plan_s, 1),
           "wall_s": round(time.monotonic() - t0, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(root / "render-log.jsonl", "a") as f:
        f.write(json.dumps(log) + "\n")
    if only is None:
        files = [i.path for i in items] + write_tables(root, items, round(clip_seconds, 6))
        write_checksums(root, ["config.json"] + files)
    return root


def write_checksums(root: Path, files: list[str]) -> Path:
    lines = "".join(f"{sha256_file(root / f)}  {f}\n" for f in sorted(files))
    write_text_atomic(root / CHECKSUMS, lines)
    return root / CHECKSUMS


def read_checksums(path: Path) -> dict[str, str]:
    if not Path(path).is_file():
        raise EdgegenError(f"checksum list {path} not found")
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise EdgegenError(f"{path}:{n}: not a 'sha256  path' line")
        out[name] = digest
    return out


def compare(root: Path, expected: dict[str, str], names: list[str] | None = None) -> list[str]:
    """The mismatches (one line each) between files under `root` and `expected` (restricted to `names`)."""
    bad = []
    for name in sorted(names if names is not None else expected):
        if name not in expected:
            bad.append(f"{name}: not in the checksum list")
        elif not (root / name).is_file():
            bad.append(f"{name}: missing")
        elif sha256_file(root / name) != expected[name]:
            bad.append(f"{name}: checksum differs")
    return bad
