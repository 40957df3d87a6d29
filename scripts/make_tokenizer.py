"""Write edgegen's caption corpus and train the SentencePiece model used by the built-in `random:` models.

    python scripts/make_tokenizer.py      # rewrites edgegen/assets/captions.txt and spiece.model

The corpus is generated from word lists written for the project (sound sources, genres, moods, tempi),
so the tokenizer needs no download. Ids follow T5's convention: pad 0, eos 1, unk 2, no bos.
"""

from __future__ import annotations

import io
import itertools
import random
import string
from pathlib import Path

import sentencepiece as spm

ASSETS = Path(__file__).resolve().parents[1] / "edgegen" / "assets"

SOURCES = ["dog barking", "rain on a tin roof", "thunder rolling", "crowd cheering", "church bells", "birdsong",
           "ocean waves", "footsteps on gravel", "door creaking", "car engine idling", "glass shattering",
           "typewriter keys", "wind through pine trees", "campfire crackling", "steam train whistle",
           "cat purring", "helicopter overhead", "clock ticking", "baby laughing", "kettle whistling"]
INSTRUMENTS = ["piano", "acoustic guitar", "electric guitar", "synthesizer pad", "drum kit", "bass guitar",
               "violin", "cello", "trumpet", "saxophone", "flute", "marimba", "808 kick", "hi-hats", "choir",
               "tabla", "sitar", "harp", "organ", "banjo", "ukulele", "steel drums", "kalimba", "clarinet"]
GENRES = ["techno", "house", "ambient", "lo-fi hip hop", "drum and bass", "jazz", "funk", "disco", "trap",
          "dubstep", "cinematic", "folk", "rock", "metal", "reggae", "bossa nova", "synthwave", "orchestral"]
MOODS = ["dark", "uplifting", "melancholic", "energetic", "calm", "tense", "dreamy", "aggressive", "warm",
         "playful", "epic", "minimal", "gritty", "lush", "sparse", "hypnotic"]
TEMPOS = [f"{bpm} BPM" for bpm in range(60, 181, 4)]
KEYS = [f"{n} {q}" for n in "ABCDEFG" for q in ("major", "minor")]
TEMPLATES = [
    "{mood} {genre} loop with {inst} at {tempo}",
    "{inst} solo, {mood}, in {key}",
    "{genre} beat, {tempo}, {inst} and {inst2}",
    "recording of a {source}",
    "{source} in the distance, {mood} atmosphere",
    "{mood} {genre} track featuring {inst}, {key}, {tempo}",
    "field recording: {source} and {source2}",
    "{inst} chord progression in {key}, {mood} and {mood2}",
    "sound effect of a {source}, close up",
    "a {mood} {inst} melody over {genre} drums",
]


def captions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(rng.choice(TEMPLATES).format(
            mood=rng.choice(MOODS), mood2=rng.choice(MOODS), genre=rng.choice(GENRES), inst=rng.choice(INSTRUMENTS),
            inst2=rng.choice(INSTRUMENTS), tempo=rng.choice(TEMPOS), key=rng.choice(KEYS),
            source=rng.choice(SOURCES), source2=rng.choice(SOURCES)))
    out += [" ".join(words) for words in itertools.product(MOODS, GENRES)]
    out.append(string.ascii_letters + string.digits + string.punctuation)  # every ASCII character is a piece
    return out


def train(corpus: list[str], vocab_size: int = 1000) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, normalization_rule_name="nmt_nfkc",
        num_threads=1, minloglevel=2,
        hard_vocab_limit=False)  # the corpus is small: take what it supports, up to vocab_size
    return model.getvalue()


def main() -> None:
    corpus = captions(4000)
    (ASSETS / "captions.txt").write_text("\n".join(corpus) + "\n")
    (ASSETS / "spiece.model").write_bytes(train(corpus))
    print(f"wrote {ASSETS / 'captions.txt'} ({len(corpus)} captions) and {ASSETS / 'spiece.model'}")


if __name__ == "__main__":
    main()
