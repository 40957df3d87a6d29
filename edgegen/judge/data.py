"""Sets of audio for the judge: a captions file, a folder holding captions.jsonl, or a folder of audio files.

    s = find_set(Path("~/.cache/edgegen/corpus/seed-0/held_out"))   # AudioSet(source, paths, labels)
    for clip in s.clips(sample_rate=44100): ...                      # [2, n] float32, one file at a time

A captions file (edgegen.train.data.read_captions: .jsonl or .csv with path, caption[, seconds][, label]) gives
each clip the label its prompt asked for ("family/kind/tempo_band", e.g. "strings/chorale/moderate"), which is what
adherence is scored against; a corpus split folder holds such a file. A folder without captions.jsonl is every
.wav / .flac / .ogg in it (sorted by name), unlabelled: enough for the Frechet distance. Files are read when
iterated, resampled to the judge's rate when they are at another (edgegen.train.data.read_clip) and mixed to mono
by the frontend; a generated clip that is silent is judged like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.errors import EdgegenError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
CAPTIONS = "captions.jsonl"


@dataclass(frozen=True)
class AudioSet:
    """Audio files and the label each one's prompt asked for (None: unlabelled)."""
    source: Path
    paths: tuple[Path, ...]
    labels: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labelled(self) -> bool:
        return all(label is not None for label in self.labels)

    def clips(self, *, sample_rate: int) -> Iterator[np.ndarray]:
        """Each file as float32 [2, n] at `sample_rate`; an unreadable, empty or non-finite one is one error line."""
        from edgegen.train.data import read_clip

        for path in self.paths:
            audio, why = read_clip(path, sample_rate=sample_rate)
            if audio is None or not np.isfinite(audio).all():
                raise EdgegenError(f"{path} ({self.source}): {why or 'non-finite samples'}; every file of a set "
                                   "must be readable audio")
            yield audio


def find_set(source: Path, *, option: str = "--audio") -> AudioSet:
    """The set `source` names (see the module docstring); every listed file must exist. Reads no audio."""
    from edgegen.train.data import read_captions

    source = Path(source).expanduser()
    if source.is_dir() and (source / CAPTIONS).is_file():
        source = source / CAPTIONS
    if source.is_file():
        if source.suffix in AUDIO_SUFFIXES:
            raise EdgegenError(f"{option} {source} is one audio file; give a folder of clips or a captions file")
        records = read_captions(source)
        paths = tuple(source.parent / r.path for r in records)
        labels = tuple(r.label for r in records)
    elif source.is_dir():
        paths = tuple(sorted(p for p in source.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()))
        labels = (None,) * len(paths)
        if not paths:
            raise EdgegenError(f"{option} {source}: no {CAPTIONS} and no {'/'.join(AUDIO_SUFFIXES)} files in it")
    else:
        raise EdgegenError(f"{option} {source} does not exist; give a folder of clips or a captions file")
    if missing := [p for p in paths if not p.is_file()]:
        raise EdgegenError(f"{option} {source}: {len(missing)} listed file(s) missing, first {missing[0]}")
    return AudioSet(source=source, paths=paths, labels=labels)
