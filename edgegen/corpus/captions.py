"""Captions from a clip's render parameters: several templates, word orders and synonyms per attribute.

    text = caption(attrs, rng, held_out=False)   # a training-style caption
    text = caption(attrs, rng, held_out=True)    # a held-out phrasing: a template and synonyms never used in training

`attrs` holds the slots' phrase choices: for each of inst, kind, tempo, key, dyn a pair (training phrasings,
held-out phrasings), already filled in with the clip's values. A held-out caption uses a held-out template and, for
every slot that has one, a held-out synonym, so it shares no distinctive wording with any training caption.
HELD_OUT_MARKERS lists the words that only held-out captions use (tests check none reaches a training caption).
"""

from __future__ import annotations

import numpy as np

# fragments are dropped when their slot is missing; {slot} takes the slot's phrase, {keyname}/{bpm} raw values
TRAIN_TEMPLATES = (
    ("{inst}", ", {kind}", ", {key}", ", {tempo}", ", {dyn}"),
    ("{kind}", ", {inst}", ", {tempo}", ", {key}", ", {dyn}"),
    ("{dyn} {kind}", " played on {inst}", ", {key}", ", {tempo}"),
    ("{kind} on {inst}", " in {keyname}", " at {bpm} BPM", ", {dyn}"),
    ("{tempo}", ", {dyn}", ", {inst}", ", {kind}", ", {key}"),
)
HELD_OUT_TEMPLATES = (
    ("a recording of {inst} playing a {kind}", "; {key}", "; {tempo}", "; {dyn}"),
    ("{dyn} {kind} performed by {inst}", ", {tempo}", ", {key}"),
)
TEMPO_FORMS = ("{bpm} BPM", "{bpm} bpm", "tempo {bpm}", "{band} at {bpm} BPM", "{band}, {bpm} BPM")
TEMPO_HELD_OUT = ("{bpm} beats per minute", "{band}, {bpm} beats per minute")
BAND_WORDS = {"slow": (("slow",), ("leisurely",)), "moderate": (("moderate", "mid-tempo"), ("unhurried",)),
              "fast": (("fast", "up-tempo"), ("brisk",))}
DYN_WORDS = {"soft": (("soft", "quiet", "gentle"), ("hushed",)),
             "medium": (("medium volume", "moderately loud", "mezzo-forte"), ("medium loudness",)),
             "loud": (("loud", "powerful", "forte"), ("intense",))}
KEY_FORMS = (("in {key}", "{key}", "key of {key}"), ("{key} tonality",))
HELD_OUT_MARKERS = ("a recording of", "performed by", "beats per minute", ";", "tonality", "leisurely",
                    "unhurried", "brisk", "hushed", "medium loudness", "intense")


def tempo_phrases(bpm: int, band: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    train_band, held_band = BAND_WORDS[band]
    train = tuple(f.format(bpm=bpm, band=b) for f in TEMPO_FORMS for b in (train_band if "{band}" in f else ("",)))
    held = tuple(f.format(bpm=bpm, band=b) for f in TEMPO_HELD_OUT for b in (held_band if "{band}" in f else ("",)))
    return tuple(dict.fromkeys(train)), tuple(dict.fromkeys(held))


def key_phrases(key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(f.format(key=key) for f in KEY_FORMS[0]), tuple(f.format(key=key) for f in KEY_FORMS[1])


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def caption(attrs: dict, rng: np.random.Generator, *, held_out: bool = False, bpm: int | None = None,
            keyname: str | None = None) -> str:
    """One caption. attrs: slot -> (training phrases, held-out phrases) or None for a slot the clip lacks."""
    templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
    template = templates[int(rng.integers(len(templates)))]
    slots = {}
    for slot, phrases in attrs.items():
        if phrases is None:
            continue
        train, held = phrases
        slots[slot] = _pick(held if held_out and held else train, rng)
    if not held_out and "key" in slots and rng.random() < 0.3:  # the key is left out of some captions
        slots.pop("key")
        keyname = None
    values = dict(slots, bpm=bpm, keyname=keyname)
    out = []
    for frag in template:
        names = [n for n in ("inst", "kind", "tempo", "key", "dyn", "bpm", "keyname") if "{" + n + "}" in frag]
        if all(values.get(n) is not None for n in names):
            out.append(frag.format(**{n: values[n] for n in names}))
    text = "".join(out).lstrip(",; ")
    return text[:1].upper() + text[1:] if text[:1].islower() and held_out is False and rng.random() < 0.5 else text
