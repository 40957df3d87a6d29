"""A captioned corpus rendered from real instrument samples (FluidR3 GM via fluidsynth), deterministic from a seed.

    from edgegen.corpus import render_corpus, verify_corpus
    root = render_corpus(seed=0)                    # ~/.cache/edgegen/corpus/seed-0: 2.3 h, resumable
    problems = verify_corpus(root)                  # [] when every file matches the committed checksum list
    problems = verify_sample(seed=0, sample=40)     # re-render 40 clips in a temporary folder and compare

Command line: `python -m edgegen.corpus render [--seed N] [--out DIR] [--verify]`, `... verify [--sample N]`.

The default corpus (seed 0): 1400 clips of 262144 samples (5.94 s, 128 latent frames), 2.31 h; 600 windows of
real pieces (Bach chorales, Palestrina / Monteverdi polyphony, Mozart / Haydn quartet movements, fiddle tunes from
Ryan's Mammoth Collection) and 800 generated clips (drum loops in 9 styles on 7 kits, bass lines, arpeggios, chord
progressions, NSynth-style single notes), 11 instrument families; splits 1132 / 154 / 114 clips (train /
validation / held_out). Its checksum list is edgegen/assets/corpus-seed-0.sha256 (after a change that alters the
audio or the tables: render again and copy the folder's SHA256SUMS there, keeping the two '#' header lines).
Modules: gm (instruments, kits), midi (SMF writer), synth (fluidsynth, loudness, WAV), scores (music21 pieces),
patterns (generated material), captions (templates, synonyms, held-out phrasings), plan (clips, splits),
render (state folder, resume, tables, checksums).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgegen.corpus.plan import DEFAULT_CLIP_SAMPLES, DEFAULT_COUNTS, KINDS, SPLITS, build_plan, held_out_words
from edgegen.corpus.render import (COMMITTED, clip_samples_for, compare, default_root, read_checksums, render_corpus,
                                   summary, write_tables)
from edgegen.corpus.synth import SAMPLE_RATE
from edgegen.errors import EdgegenError

__all__ = ["render_corpus", "verify_corpus", "verify_sample", "build_plan", "summary", "default_root",
           "clip_samples_for", "held_out_words", "DEFAULT_COUNTS", "DEFAULT_CLIP_SAMPLES", "KINDS", "SPLITS",
           "COMMITTED"]


def _expected(against: Path | None, seed: int, counts: dict | None, clip_samples: int) -> dict[str, str]:
    if against is not None:
        return read_checksums(against)
    if seed != 0 or (counts is not None and counts != DEFAULT_COUNTS) or clip_samples != DEFAULT_CLIP_SAMPLES:
        raise EdgegenError("only the default corpus (seed 0, default counts and clip length) has a committed "
                           "checksum list; give --against SHA256SUMS of an earlier render")
    return read_checksums(COMMITTED)


def verify_corpus(root: Path, *, against: Path | None = None, seed: int = 0, counts: dict | None = None,
                  clip_samples: int = DEFAULT_CLIP_SAMPLES) -> list[str]:
    """Mismatches between the rendered folder and the checksum list (the committed one by default)."""
    return compare(Path(root), _expected(against, seed, counts, clip_samples))


def verify_sample(*, seed: int = 0, sample: int = 40, against: Path | None = None, counts: dict | None = None,
                  clip_samples: int = DEFAULT_CLIP_SAMPLES, soundfont: Path | None = None,
                  out: Path | None = None) -> tuple[list[str], list[str]]:
    """Re-render `sample` clips spread evenly over the plan into `out` (default: a temporary folder), write the
    whole plan's captions / labels / summary there, and compare all of these and the config with the checksum list.
    Returns (paths checked, mismatches)."""
    expected = _expected(against, seed, counts, clip_samples)
    items = build_plan(seed=seed, counts=dict(DEFAULT_COUNTS if counts is None else counts),
                       clip_samples=clip_samples)
    step = max(1, len(items) // max(1, sample))
    chosen = items[::step][:sample]
    with tempfile.TemporaryDirectory(prefix="edgegen-corpus-verify-") as tmp:
        root = Path(out) if out is not None else Path(tmp)
        render_corpus(root, seed=seed, counts=counts, clip_samples=clip_samples, soundfont=soundfont,
                      only=[i.id for i in chosen])
        names = [i.path for i in chosen] + ["config.json"]
        names += write_tables(root, items, round(clip_samples / SAMPLE_RATE, 6))
        return names, compare(root, expected, names)
