"""The corpus plan: every clip's parameters, labels, captions and split, deterministic from a seed.

    items = build_plan(seed=0, counts=DEFAULT_COUNTS, clip_samples=262144)   # [Item], in render order

Pieces are drawn from music21's corpus in a seed-shuffled order (each gives up to WINDOWS[kind] non-overlapping
windows); generated material gets one pattern seed per clip. Each clip's random choices come from a generator
seeded by (seed, kind, index), so one clip's parameters never depend on another's. The split is a hash of
(seed, source): a piece's windows, and a pattern seed, are in exactly one of train / validation / held_out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgegen.corpus import captions as cap
from edgegen.corpus import patterns as pat
from edgegen.corpus import scores
from edgegen.corpus.gm import ENSEMBLES, INSTRUMENTS, KITS, PITCH_NAMES, note_name, tempo_band
from edgegen.errors import EdgegenError

SPLITS = ("train", "validation", "held_out")
SPLIT_PER_MILLE = (800, 100, 100)
DEFAULT_CLIP_SAMPLES = 262144  # 5.94 s at 44.1 kHz: 128 latent frames of SAO's 2048x autoencoder
DEFAULT_COUNTS = {"chorale": 260, "polyphony": 100, "quartet": 100, "fiddle tune": 200, "drum loop": 240,
                  "bass line": 120, "arpeggio": 120, "chords": 120, "single note": 140}
KINDS = tuple(DEFAULT_COUNTS)
WINDOWS = {"chorale": 2, "polyphony": 3, "quartet": 6, "fiddle tune": 1}
BPM = {"chorale": (60, 100), "polyphony": (70, 110), "quartet": (70, 140), "fiddle tune": (96, 150),
       "bass line": (76, 132), "arpeggio": (66, 128), "chords": (60, 128)}
ENSEMBLE_CHOICES = {"chorale": ("string_quartet", "piano", "organ", "brass_quartet", "woodwind_quartet", "choir"),
                    "polyphony": ("choir", "organ", "recorder_consort", "brass_quartet", "string_quartet"),
                    "quartet": ("string_quartet",)}
SOLO = {
    "fiddle tune": ("violin", "flute", "piano", "accordion", "clarinet", "oboe", "recorder", "banjo", "harp",
                    "marimba", "alto_sax", "trumpet", "square_lead", "harpsichord", "vibraphone", "steel_guitar"),
    "bass line": ("acoustic_bass", "electric_bass", "fretless_bass", "slap_bass", "synth_bass"),
    "arpeggio": ("piano", "harp", "nylon_guitar", "steel_guitar", "marimba", "vibraphone", "celesta", "harpsichord",
                 "electric_piano", "square_lead", "saw_lead", "glockenspiel"),
    "chords": ("piano", "electric_piano", "church_organ", "drawbar_organ", "accordion", "string_ensemble",
               "warm_pad", "choir", "steel_guitar", "nylon_guitar", "brass_section", "saw_lead"),
    "single note": tuple(INSTRUMENTS),
}
STRUMMED = {"steel_guitar", "nylon_guitar", "piano", "electric_piano", "banjo"}
DYNAMICS = ("soft", "medium", "loud")
KIND_WORDS = {
    "chorale": (("Bach chorale", "chorale by Bach", "four-part chorale", "J. S. Bach chorale"),
                ("Lutheran hymn setting",)),
    "polyphony": (("Renaissance polyphony", "polyphonic Renaissance piece", "{composer} polyphony"),
                  ("sixteenth-century counterpoint",)),
    "quartet": (("{composer} string quartet movement", "classical string quartet", "{composer} quartet"),
                ("classical-era chamber piece",)),
    "fiddle tune": (("fiddle tune", "traditional {tune}", "folk {tune}"), ("Celtic dance melody",)),
    "drum loop": (("drum loop", "{style} drum beat", "{style} beat", "drum groove"),
                  ("percussion loop", "{style} rhythm track")),
    "bass line": (("bass line", "bass riff", "bassline"), ("low-end riff",)),
    "arpeggio": (("arpeggio", "arpeggiated chords", "broken chords"), ("rolling arpeggiation",)),
    "chords": (("chord progression", "chords", "block chords"), ("sequence of harmonies",)),
    "single note": (("single note", "one note", "isolated note"), ("lone sustained tone",)),
}
PITCH_FORMS = ("{note}", "pitch {note}", "note {note}")


@dataclass
class Item:
    id: str
    kind: str
    split: str
    source: str                 # corpus path or "pattern:<seed>": the unit of splitting
    params: dict                # everything the renderer needs
    labels: dict                # family, kind, tempo_band, dynamics, instrument, bpm, key, ...
    caption: str                # training phrasing
    held_out_caption: str       # a held-out phrasing of the same attributes

    @property
    def label(self) -> str:
        """The one-string label the trainers read: family/kind/tempo_band (split on '/' for the three labels)."""
        return f"{self.labels['family']}/{self.labels['kind'].replace(' ', '_')}/{self.labels['tempo_band']}"

    @property
    def path(self) -> str:
        return f"{self.split}/clips/{self.id}.wav"


def split_of(seed: int, source: str) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{source}".encode()).digest()[:8], "big") % 1000
    return SPLITS[0] if h < SPLIT_PER_MILLE[0] else SPLITS[1] if h < sum(SPLIT_PER_MILLE[:2]) else SPLITS[2]


def held_out_words() -> list[str]:
    """Every literal phrase that only held-out captions use (synonyms, template words, kind phrases)."""
    out = set(cap.HELD_OUT_MARKERS)
    tables = [i.held_out for i in INSTRUMENTS.values()] + [e[3] for e in ENSEMBLES.values()] + \
        [k[2] for k in KITS.values()] + [w[1] for w in KIND_WORDS.values()]
    for words in tables:
        for w in words:
            out.update(s.strip() for s in w.replace("{", "}").split("}")[::2] if len(s.strip()) >= 4)
    return sorted(out)


def _rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, KINDS.index(kind), index])


def _fill(words: tuple[str, ...], **values) -> tuple[str, ...]:
    out = []
    for w in words:
        if all(values.get(k) for k in ("composer", "tune", "style") if "{" + k + "}" in w):
            out.append(w.format(**{k: v for k, v in values.items() if v}))
    return tuple(out)


def _attrs(kind, inst_words, bpm, key, dyn, **values) -> dict:
    train, held = KIND_WORDS[kind]
    return {"inst": inst_words, "kind": (_fill(train, **values) or train[:1], _fill(held, **values)),
            "tempo": cap.tempo_phrases(bpm, tempo_band(bpm)) if bpm else None,
            "key": cap.key_phrases(key) if key else None, "dyn": cap.DYN_WORDS[dyn]}


def _item(seed, kind, index, source, params, labels, attrs, *, bpm=None, keyname=None) -> Item:
    rng = np.random.default_rng([seed, KINDS.index(kind), index, 1])
    train = cap.caption(attrs, rng, bpm=bpm, keyname=keyname)
    held = cap.caption(attrs, rng, held_out=True, bpm=bpm, keyname=keyname)
    split = split_of(seed, source)
    labels = dict(labels, kind=kind, tempo_band=tempo_band(bpm), bpm=bpm, split=split, source=source)
    slug = kind.replace(" ", "-")
    return Item(f"{slug}-{index:04d}", kind, split, source, params, labels, train, held)


def _score_items(seed: int, kind: str, count: int, clip_seconds: float) -> list[Item]:
    paths = scores.corpus_paths(kind)
    order = np.random.default_rng([seed, KINDS.index(kind), 10**6]).permutation(len(paths))
    items: list[Item] = []
    for n, j in enumerate(order):
        if len(items) >= count:
            break
        rng = _rng(seed, kind, n)
        bpm = int(rng.integers(BPM[kind][0], BPM[kind][1] + 1))
        dyn = DYNAMICS[int(rng.integers(3))]
        try:
            piece = scores.load_piece(paths[j])
        except EdgegenError:
            continue  # a corpus piece music21 cannot read is skipped, the same way on every run
        starts = scores.windows(piece, bpm=bpm, seconds=clip_seconds, count=WINDOWS[kind])
        if kind == "fiddle tune":
            solo = SOLO[kind][int(rng.integers(len(SOLO[kind])))]
            inst = INSTRUMENTS[solo]
            programs, family, words = [inst.program], inst.family, (tuple(f"solo {w}" for w in inst.words[:1])
                                                                     + inst.words, inst.held_out)
            shifts = [scores.octave_shift(piece, 0, inst.low, inst.high)]
            name = solo
        else:
            choices = ENSEMBLE_CHOICES[kind]
            name = choices[int(rng.integers(len(choices)))]
            members, family, train_w, held_w = ENSEMBLES[name]
            k = len(piece.parts)
            chosen = [members[min(len(members) - 1, i * len(members) // k)] for i in range(k)]
            programs = [INSTRUMENTS[m].program for m in chosen]
            shifts = [scores.octave_shift(piece, i, INSTRUMENTS[m].low - 7, INSTRUMENTS[m].high + 7)
                      for i, m in enumerate(chosen)]
            words = (train_w, held_w)
        folder = paths[j].split("/")[0]
        composer = scores.COMPOSERS.get(folder)
        for w, start in enumerate(starts[:count - len(items)]):
            params = {"piece": paths[j], "start": start, "bpm": bpm, "dyn": dyn, "programs": programs,
                      "shifts": shifts, "window_seed": [seed, KINDS.index(kind), n, w]}
            labels = {"family": family, "instrument": name, "dynamics": dyn, "key": piece.key, "window": w,
                      "piece": paths[j], "title": piece.title}
            attrs = _attrs(kind, words, bpm, piece.key, dyn, composer=composer, tune=piece.tune_type or "tune")
            items.append(_item(seed, kind, len(items), f"piece:{paths[j]}", params, labels, attrs, bpm=bpm,
                               keyname=piece.key))
    return items


def _generated_items(seed: int, kind: str, count: int) -> list[Item]:
    items = []
    for i in range(count):
        rng = _rng(seed, kind, i)
        pattern_seed = int(rng.integers(2**31))
        dyn = DYNAMICS[int(rng.integers(3))]
        params: dict = {"dyn": dyn, "pattern_seed": pattern_seed}
        key = keyname = None
        if kind == "drum loop":
            style = list(pat.DRUM_STYLES)[int(rng.integers(len(pat.DRUM_STYLES)))]
            (lo, hi), kits, _, _ = pat.DRUM_STYLES[style]
            kit = kits[int(rng.integers(len(kits)))]
            bpm = int(rng.integers(lo, hi + 1))
            params.update(style=style, kit_program=KITS[kit][0], bpm=bpm)
            family, name, words = "drums", f"{kit} kit", KITS[kit][1:]
            extra = {"style": style}
        elif kind == "single note":
            name = SOLO[kind][int(rng.integers(len(SOLO[kind])))]
            inst = INSTRUMENTS[name]
            pitch = int(rng.integers(max(inst.low + 3, 33), min(inst.high - 3, 100) + 1))
            bpm, family, words = None, inst.family, (inst.words, inst.held_out)
            params.update(instrument=name, pitch=pitch, hold=round(float(rng.uniform(2.0, 3.5)), 3))
            key, extra = note_name(pitch), {}
        else:
            name = SOLO[kind][int(rng.integers(len(SOLO[kind])))]
            inst = INSTRUMENTS[name]
            bpm = int(rng.integers(BPM[kind][0], BPM[kind][1] + 1))
            mode = ("major", "minor")[int(rng.integers(2))]
            root = int(rng.integers(12))
            progs = pat.PROGRESSIONS[mode]
            params.update(instrument=name, bpm=bpm, key_root=root, mode=mode,
                          progression=list(progs[int(rng.integers(len(progs)))]))
            if kind == "bass line":
                params["pattern"] = pat.BASS_PATTERNS[int(rng.integers(len(pat.BASS_PATTERNS)))]
            elif kind == "arpeggio":
                params["pattern"] = pat.ARP_PATTERNS[int(rng.integers(len(pat.ARP_PATTERNS)))]
                params["rate"] = 4 if bpm * 4 / 60 <= 8 else 2
            else:
                rhythms = pat.CHORD_RHYTHMS if name in STRUMMED else pat.CHORD_RHYTHMS[:3]
                params["rhythm"] = rhythms[int(rng.integers(len(rhythms)))]
            family, words = inst.family, (inst.words, inst.held_out)
            key = keyname = f"{PITCH_NAMES[root]} {mode}"
            extra = {k: params[k] for k in ("pattern", "rhythm") if k in params}
        labels = dict({"family": family, "instrument": name, "dynamics": dyn, "key": key,
                       "pattern_seed": pattern_seed}, **extra)
        if kind == "single note":
            attrs = _attrs(kind, words, None, None, dyn)
            attrs["key"] = (tuple(f.format(note=key) for f in PITCH_FORMS), ())
        else:
            attrs = _attrs(kind, words, bpm, key, dyn, style=extra.get("style"))
        items.append(_item(seed, kind, i, f"pattern:{kind}:{pattern_seed}", params, labels, attrs, bpm=bpm,
                           keyname=keyname))
    return items


def build_plan(*, seed: int, counts: dict[str, int], clip_samples: int, sample_rate: int = 44100) -> list[Item]:
    """Every clip of the corpus, kinds in KINDS order. Unknown kinds or negative counts are one error line."""
    if bad := sorted(set(counts) - set(KINDS)):
        raise EdgegenError(f"unknown material kind(s) {', '.join(bad)}; choose from {', '.join(KINDS)}")
    if any(int(c) < 0 for c in counts.values()):
        raise EdgegenError("clip counts must be >= 0")
    items = []
    for kind in KINDS:
        n = int(counts.get(kind, 0))
        if n == 0:
            continue
        if kind in WINDOWS:
            items += _score_items(seed, kind, n, clip_samples / sample_rate)
        else:
            items += _generated_items(seed, kind, n)
    if not items:
        raise EdgegenError("the plan has no clips: give at least one kind a count > 0")
    return items
