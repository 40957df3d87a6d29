"""Generated material: drum loops, bass lines, arpeggios, chord progressions and single notes, as Notes in seconds.

Every generator takes the clip's parameters and a numpy Generator made from the clip's pattern seed, so the same
seed gives the same notes; `length` is the clip's duration in seconds (material is generated a little past it).
"""

from __future__ import annotations

import numpy as np

from edgegen.corpus.gm import DRUM, INSTRUMENTS
from edgegen.corpus.midi import DRUM_CHANNEL, Channel, Note

VELOCITY = {"soft": 48, "medium": 78, "loud": 108}
LOUDNESS_DB = {"soft": -27.0, "medium": -22.0, "loud": -18.0}  # normalisation targets per dynamic

# 16 steps per bar: x accent, o normal, g ghost, . rest. Styles: BPM range, kits, swing (0 straight .. 1/3 triplet)
DRUM_STYLES = {
    "rock": ((90, 140), ("standard", "room", "power"), 0.0,
             {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.o.x.o.x.o.x.o."}),
    "funk": ((90, 115), ("standard", "room"), 0.0,
             {"kick": "x..o..x...x..o..", "snare": "....x..g.g..x..g", "hat": "xoooxoooxoooxooo"}),
    "disco": ((112, 130), ("standard", "electronic", "tr808"), 0.0,
              {"kick": "x...x...x...x...", "clap": "....x.......x...", "open_hat": "..o...o...o...o.",
               "hat": "o.o.o.o.o.o.o.o."}),
    "hip hop": ((80, 98), ("tr808", "electronic", "standard"), 0.0,
                {"kick": "x......o..x.....", "snare": "....x.......x...", "hat": "o.o.o.o.o.o.o.o."}),
    "shuffle": ((80, 120), ("standard", "room"), 0.33,
                {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.o.x.o.x.o.x.o."}),
    "jazz swing": ((110, 180), ("jazz", "brush"), 0.33,
                   {"ride": "x...x.o.x...x.o.", "pedal_hat": "....x.......x...", "kick": "g...g...g...g..."}),
    "bossa nova": ((110, 140), ("standard", "jazz", "brush"), 0.0,
                   {"kick": "x..xx..xx..xx..x", "side_stick": "x..x..x...x..x..", "hat": "o.o.o.o.o.o.o.o."}),
    "reggae": ((66, 88), ("standard", "room"), 0.15,
               {"kick": "........x.......", "side_stick": "........x.......", "hat": "o.o.o.o.o.o.o.o."}),
    "breakbeat": ((160, 176), ("electronic", "standard"), 0.0,
                  {"kick": "x.........x.....", "snare": "....x.......x...", "hat": "oooooooooooooooo"}),
}
STEP_VEL = {"x": 1.0, "o": 0.75, "g": 0.4}

MAJOR = {"I": (0, "maj"), "ii": (2, "min"), "iii": (4, "min"), "IV": (5, "maj"), "V": (7, "maj"), "vi": (9, "min")}
MINOR = {"i": (0, "min"), "iv": (5, "min"), "v": (7, "min"), "V": (7, "maj"), "III": (3, "maj"), "VI": (8, "maj"),
         "VII": (10, "maj")}
PROGRESSIONS = {
    "major": (("I", "V", "vi", "IV"), ("I", "IV", "V", "IV"), ("ii", "V", "I", "I"), ("I", "vi", "IV", "V"),
              ("I", "iii", "IV", "V")),
    "minor": (("i", "VI", "III", "VII"), ("i", "iv", "V", "i"), ("i", "VII", "VI", "V"), ("i", "iv", "VII", "III")),
}
QUALITY = {"maj": (0, 4, 7), "min": (0, 3, 7)}
BASS_PATTERNS = ("eighths", "root_fifth", "walking", "syncopated", "sparse")
ARP_PATTERNS = ("up", "down", "up_down", "alberti")
CHORD_RHYTHMS = ("sustained", "quarters", "offbeats", "strummed")


def _vel(dyn: str, rng: np.random.Generator, scale: float = 1.0) -> int:
    return int(np.clip(round(VELOCITY[dyn] * scale + rng.normal(0, 5)), 1, 127))


def drum_loop(*, style: str, kit_program: int, bpm: float, dyn: str, length: float,
              rng: np.random.Generator) -> tuple[list[Note], list[Channel]]:
    """A one-bar pattern of `style` with seed-dependent variations (extra kicks, ghost notes, a fill every second
    bar, a crash on the first beat), looped for `length` seconds."""
    _, _, swing, base = DRUM_STYLES[style]
    pattern = {k: list(v) for k, v in base.items()}
    if "kick" in pattern and rng.random() < 0.6:  # one extra kick on a weak sixteenth
        weak = [i for i in (3, 6, 7, 11, 14, 15) if pattern["kick"][i] == "."]
        pattern["kick"][int(rng.choice(weak))] = "o"
    if "snare" in pattern and rng.random() < 0.5:
        for i in rng.choice([1, 5, 9, 13, 15], size=2, replace=False):
            if pattern["snare"][i] == ".":
                pattern["snare"][i] = "g"
    if "hat" in pattern and rng.random() < 0.3:  # open the hat on the last off-beat
        pattern["hat"][14] = "."
        pattern.setdefault("open_hat", ["."] * 16)[14] = "o"
    fill = rng.random() < 0.5
    crash = rng.random() < 0.5
    step = 60.0 / bpm / 4
    notes: list[Note] = []
    bars = int(np.ceil(length / (16 * step))) + 1
    for bar in range(bars):
        for voice, steps in pattern.items():
            for i, c in enumerate(steps):
                if c == "." or (fill and bar % 2 == 1 and i >= 12 and voice in ("snare", "kick", "hat")):
                    continue
                t = (bar * 16 + i) * step + (swing * 2 * step if i % 2 == 1 else 0.0)
                t += rng.normal(0, 0.004) if t > 0.01 else 0.0
                notes.append(Note(max(0.0, t), step * 0.9, DRUM[voice], _vel(dyn, rng, STEP_VEL[c]), DRUM_CHANNEL))
        if fill and bar % 2 == 1:
            toms = [DRUM["tom_high"], DRUM["tom_mid"], DRUM["tom_low"], DRUM["snare"]]
            for j, i in enumerate(range(12, 16)):
                notes.append(Note((bar * 16 + i) * step, step, toms[int(rng.integers(4)) if j else 0],
                                  _vel(dyn, rng, 0.9), DRUM_CHANNEL))
        if crash and bar % 2 == 0:
            notes.append(Note(bar * 16 * step, 1.0, DRUM["crash"], _vel(dyn, rng, 0.9), DRUM_CHANNEL))
    return [n for n in notes if n.t < length], [Channel(DRUM_CHANNEL, kit_program, 64, 110, 30)]


def chords_of(key_root: int, mode: str, progression: tuple[str, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """[(root pitch class offset from C, intervals)] for each chord of the progression."""
    table = MAJOR if mode == "major" else MINOR
    return [((key_root + table[d][0]) % 12, QUALITY[table[d][1]]) for d in progression]


def _in_range(pc: int, low: int, high: int) -> int:
    """The lowest pitch of class `pc` at or above `low` (wrapping down into range if it passes `high`)."""
    p = low + (pc - low) % 12
    return p if p <= high else p - 12


def _bar_chords(key_root: int, mode: str, progression: tuple[str, ...], bpm: float, length: float):
    """Per 4/4 bar covering `length` seconds (one past its end): (bar start in seconds, this bar's chord as
    (root pitch class, intervals), the next bar's chord), the progression repeating."""
    chords = chords_of(key_root, mode, progression)
    beat = 60.0 / bpm
    for bar in range(int(np.ceil(length / (240.0 / bpm))) + 1):
        yield bar * 4 * beat, chords[bar % len(chords)], chords[(bar + 1) % len(chords)]


def bass_line(*, instrument: str, key_root: int, mode: str, progression: tuple[str, ...], pattern: str,
              bpm: float, dyn: str, length: float, rng: np.random.Generator) -> tuple[list[Note], list[Channel]]:
    inst = INSTRUMENTS[instrument]
    beat = 60.0 / bpm
    notes: list[Note] = []
    for t0, (root_pc, q), (next_pc, _) in _bar_chords(key_root, mode, progression, bpm, length):
        root = _in_range(root_pc, inst.low, inst.low + 14)
        nxt = _in_range(next_pc, inst.low, inst.low + 14)
        if pattern == "eighths":
            hits = [(i * 0.5, 0.45, root + (12 if i == 7 and rng.random() < 0.5 else 0)) for i in range(8)]
        elif pattern == "root_fifth":
            hits = [(0, 0.9, root), (1, 0.9, root + 7), (2, 0.9, root + 12), (3, 0.9, root + 7)]
        elif pattern == "walking":
            hits = [(0, 0.95, root), (1, 0.95, root + q[1]), (2, 0.95, root + 7),
                    (3, 0.95, nxt + (1 if rng.random() < 0.5 else -1))]
        elif pattern == "syncopated":
            hits = [(0, 0.4, root), (0.75, 0.2, root + 12), (1.5, 0.4, root + 7), (2.5, 0.4, root),
                    (3.25, 0.2, root + 10 if q[1] == 3 else root + 12), (3.5, 0.4, root + 7)]
        else:  # sparse
            hits = [(0, 1.9, root), (2, 1.4, root + 7 if rng.random() < 0.6 else root + 12), (3.5, 0.45, root)]
        for beat_pos, dur, pitch in hits:
            notes.append(Note(t0 + beat_pos * beat, dur * beat, pitch, _vel(dyn, rng), 0))
    return [n for n in notes if n.t < length], [Channel(0, inst.program, 64, 110, 20)]


def _chord_pitches(root_pc: int, q: tuple[int, ...], low: int, high: int) -> list[int]:
    base = _in_range(root_pc, max(low, 48), high)
    return [p for p in (base + i for i in q) if p <= high] or [base]


def arpeggio(*, instrument: str, key_root: int, mode: str, progression: tuple[str, ...], pattern: str, rate: int,
             bpm: float, dyn: str, length: float, rng: np.random.Generator) -> tuple[list[Note], list[Channel]]:
    """Chord tones over two octaves in `pattern` order, `rate` notes per beat, one chord per bar."""
    inst = INSTRUMENTS[instrument]
    beat = 60.0 / bpm
    notes: list[Note] = []
    for t0, (root_pc, q), _ in _bar_chords(key_root, mode, progression, bpm, length):
        tones = _chord_pitches(root_pc, q, inst.low, inst.high - 12)
        tones = tones + [p + 12 for p in tones] + [tones[0] + 24]
        if pattern == "down":
            seq = tones[::-1]
        elif pattern == "up_down":
            seq = tones + tones[-2:0:-1]
        elif pattern == "alberti":
            seq = [tones[0], tones[2], tones[1], tones[2]]
        else:
            seq = tones
        n = 4 * rate
        for i in range(n):
            t = t0 + i * beat / rate
            notes.append(Note(t, beat / rate * 1.6, seq[i % len(seq)], _vel(dyn, rng, 1.05 if i % rate == 0 else 0.9),
                              0))
    return [n for n in notes if n.t < length], [Channel(0, inst.program, 64, 110, 45)]


def chord_progression(*, instrument: str, key_root: int, mode: str, progression: tuple[str, ...], rhythm: str,
                      bpm: float, dyn: str, length: float, rng: np.random.Generator
                      ) -> tuple[list[Note], list[Channel]]:
    """Block chords (close triad over the root an octave below) in `rhythm`, one chord per bar."""
    inst = INSTRUMENTS[instrument]
    beat = 60.0 / bpm
    notes: list[Note] = []
    hits = {"sustained": [(0, 3.9)], "quarters": [(i, 0.85) for i in range(4)],
            "offbeats": [(0, 0.9), (1.5, 0.4), (2.5, 0.4), (3.5, 0.4)],
            "strummed": [(0, 0.9), (1, 0.45), (1.5, 0.9), (2.5, 0.45), (3, 0.9)]}[rhythm]
    for t0, (root_pc, q), _ in _bar_chords(key_root, mode, progression, bpm, length):
        upper = _chord_pitches(root_pc, q, max(inst.low, 55), inst.high)
        voicing = [max(inst.low, upper[0] - 12)] + upper
        for pos, dur in hits:
            v = _vel(dyn, rng, 1.0 if pos == int(pos) else 0.85)
            for j, p in enumerate(voicing):
                spread = 0.012 * j if rhythm == "strummed" else 0.0
                notes.append(Note(t0 + pos * beat + spread, dur * beat, p, v, 0))
    return [n for n in notes if n.t < length], [Channel(0, inst.program, 64, 105, 45)]


def single_note(*, instrument: str, pitch: int, dyn: str, hold: float, rng: np.random.Generator
                ) -> tuple[list[Note], list[Channel]]:
    """NSynth-style: one note held `hold` seconds from 10 ms, then released into the rest of the clip."""
    inst = INSTRUMENTS[instrument]
    return [Note(0.01, hold, pitch, _vel(dyn, rng), 0)], [Channel(0, inst.program, 64, 110, 25)]
