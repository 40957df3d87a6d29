"""Real compositions from music21's bundled corpus (or a user's MIDI / MusicXML / ABC / kern file) as note lists.

    piece = load_piece("bach/bwv66.6")            # a corpus path, or a file path; parsed once per process
    starts = windows(piece, bpm=92, seconds=5.9, count=2)   # non-overlapping clip windows, in quarter notes
    notes, channels = piece_notes(piece, start=starts[0], bpm=92, seconds=5.9, programs=[40, 40, 41, 42], ...)

Parts keep their order; chords give all their pitches; ties are merged; grace notes are dropped. The tempo is the
caller's (quarter notes per minute), so a piece's own tempo marks are not used. A file music21 cannot read is one
EdgegenError line.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.corpus.midi import Channel, Note
from edgegen.errors import EdgegenError

# kind -> music21 corpus folders (with file suffixes) the plan draws pieces from
CORPUS_SOURCES = {
    "chorale": (("bach", ".mxl"),),
    "polyphony": (("palestrina", ".krn"), ("monteverdi", ".mxl")),
    "quartet": (("mozart", ".mxl"), ("haydn", ".mxl")),
    "fiddle tune": (("ryansMammoth", ".abc"),),
}
COMPOSERS = {"bach": "Bach", "palestrina": "Palestrina", "monteverdi": "Monteverdi", "mozart": "Mozart",
             "haydn": "Haydn", "ryansMammoth": None}
TUNE_TYPES = ("reel", "jig", "hornpipe", "strathspey", "polka", "waltz", "march", "slide", "schottische", "air")


@dataclass(frozen=True)
class Piece:
    source: str                                           # corpus path (e.g. bach/bwv66.6.mxl) or file path
    parts: tuple[tuple[tuple[float, float, int], ...], ...]  # per part: (offset q, duration q, midi pitch)
    length: float                                         # quarter notes
    key: str | None                                       # "F major"
    title: str

    @property
    def tune_type(self) -> str | None:
        words = self.title.lower().replace("-", " ").split()
        return next((t for t in TUNE_TYPES if t in words), None)


_CACHE: dict[str, Piece] = {}


def _music21():
    try:
        import music21
    except ImportError:
        raise EdgegenError("the corpus reads scores with music21, which is not installed: pip install -e '.[corpus]' "
                           "(scripts/setup.sh does)") from None
    return music21


def corpus_paths(kind: str) -> list[str]:
    """The sorted corpus paths (relative to music21's corpus folder) that `kind` draws from."""
    corpus = _music21().corpus
    out = []
    for folder, suffix in CORPUS_SOURCES[kind]:
        for p in corpus.getComposer(folder):
            rel = str(p).replace("\\", "/").split("/corpus/")[-1]
            if rel.endswith(suffix):
                out.append(rel)
    return sorted(out)


def load_piece(source: str | Path) -> Piece:
    """Parse a corpus path or a score file (MIDI, MusicXML, ABC, kern) once; a bad file is one EdgegenError line."""
    key = str(source)
    if key in _CACHE:
        return _CACHE[key]
    m21 = _music21()
    converter, corpus, stream = m21.converter, m21.corpus, m21.stream
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            if Path(key).is_file():
                score = converter.parse(key, forceSource=True)
            else:
                score = corpus.parse(key, forceSource=True)
            if isinstance(score, stream.Opus):
                score = score.scores[0]
            parts = []
            for part in (score.parts if len(score.parts) else [score]):
                flat = part.stripTies().flatten()
                events = tuple((float(n.offset), float(n.quarterLength), int(p.midi))
                               for n in flat.notes if n.quarterLength > 0 for p in n.pitches)
                if events:
                    parts.append(events)
            analysed = score.analyze("key") if parts else None
    except EdgegenError:
        raise
    except Exception as exc:  # music21 raises many types (ConverterException, MidiException, IndexError ...)
        what = "score file" if Path(key).is_file() else "music21 corpus piece"
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EdgegenError(f"cannot read {what} {key}: {msg}") from None
    if not parts:
        raise EdgegenError(f"{key} holds no notes")
    length = max(o + d for part in parts for o, d, _ in part)
    title = (score.metadata.title if score.metadata and score.metadata.title else Path(key).stem) or Path(key).stem
    key_name = f"{analysed.tonic.name.replace('-', 'b')} {analysed.mode}" if analysed is not None else None
    piece = Piece(key, tuple(parts), float(length), key_name, str(title))
    _CACHE[key] = piece
    return piece


def windows(piece: Piece, *, bpm: float, seconds: float, count: int) -> list[float]:
    """Up to `count` non-overlapping window starts (whole quarter notes, spread over the piece, each starting on a
    note) that fit `seconds` at `bpm`; fewer for a short piece."""
    span = seconds * bpm / 60.0
    onsets = sorted({o for part in piece.parts for o, _, _ in part})
    first = float(np.floor(onsets[0]))
    fit = int((piece.length - first) // span)
    n = min(count, fit)
    if n <= 0:
        return []
    slack = (piece.length - first) - n * span
    starts = []
    for k in range(n):
        s = float(np.floor(first + k * span + slack * (k + 0.5) / n))
        starts.append(max(s, starts[-1] + span) if starts else s)
    return [s for s in starts if s + span <= piece.length + 1e-6]


def piece_notes(piece: Piece, *, start: float, bpm: float, seconds: float, programs: list[int], velocity: int,
                pitch_shift: list[int] | None = None, rng: np.random.Generator) -> tuple[list[Note], list[Channel]]:
    """The notes sounding in [start, start + window) (one begun earlier enters at 0) on one channel per part
    (instrument `programs[i]`), the parts panned across the stereo field."""
    q = 60.0 / bpm
    end = start + seconds / q
    n = len(piece.parts)
    notes, channels = [], []
    for i, part in enumerate(piece.parts):
        ch = i if i < 9 else i + 1  # channel 9 is the drums
        if ch > 15:
            break
        pan = 64 if n == 1 else int(round(24 + 80 * i / (n - 1)))
        channels.append(Channel(ch, programs[i % len(programs)], pan, 100, 45))
        shift = pitch_shift[i] if pitch_shift else 0
        part_vel = velocity + int(rng.integers(-4, 5))
        for o, d, p in part:
            if o < end and o + d > start + 0.25:  # a note still sounding at the window's start enters at 0
                v = int(np.clip(part_vel + rng.normal(0, 4), 1, 127))
                t = max(o, start)
                notes.append(Note((t - start) * q, max((o + d - t) * q * 0.98, 0.02), p + shift, v, ch))
    return notes, channels


def octave_shift(piece: Piece, part: int, low: int, high: int) -> int:
    """Whole octaves that bring `part`'s median pitch inside [low, high] (0 if it already is)."""
    med = float(np.median([p for _, _, p in piece.parts[part]]))
    shift = 0
    while med + shift < low + 5:
        shift += 12
    while med + shift > high - 5:
        shift -= 12
    return shift
