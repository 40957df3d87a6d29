"""General MIDI facts the corpus uses: instruments (program, family, range, caption words), drum kits, note names.

Each instrument's `words` are the phrasings captions may use in training; `held_out` are synonyms never used in a
training caption (they appear only in the held-out-phrasing caption sets, to measure adherence to a user's own
wording). A held-out word is never a substring of a training word list entry (tests check this on real captions).
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("piano", "keys", "plucked", "bass", "strings", "brass", "woodwind", "mallets", "synth", "voice", "drums")


@dataclass(frozen=True)
class Instrument:
    name: str               # identifier, also the `instrument` label
    program: int            # GM program, 0-based
    family: str
    low: int                # playable MIDI range used for generated material and single notes
    high: int
    words: tuple[str, ...]
    held_out: tuple[str, ...] = ()


_I = Instrument
INSTRUMENTS = {i.name: i for i in [
    _I("piano", 0, "piano", 33, 96, ("piano", "acoustic piano", "grand piano"), ("pianoforte",)),
    _I("electric_piano", 4, "keys", 36, 91, ("electric piano", "Rhodes"), ("e-piano",)),
    _I("harpsichord", 6, "keys", 36, 89, ("harpsichord",), ("clavecin",)),
    _I("church_organ", 19, "keys", 36, 91, ("church organ", "pipe organ"), ("cathedral organ",)),
    _I("drawbar_organ", 16, "keys", 36, 91, ("drawbar organ", "Hammond organ"), ("tonewheel organ",)),
    _I("accordion", 21, "keys", 53, 89, ("accordion",), ("squeezebox",)),
    _I("nylon_guitar", 24, "plucked", 40, 84, ("nylon-string guitar", "classical guitar"), ("Spanish guitar",)),
    _I("steel_guitar", 25, "plucked", 40, 84, ("steel-string guitar", "acoustic guitar"), ("folk guitar",)),
    _I("harp", 46, "plucked", 36, 96, ("harp", "concert harp"), ("pedal harp",)),
    _I("banjo", 105, "plucked", 48, 84, ("banjo",)),
    _I("acoustic_bass", 32, "bass", 28, 55, ("acoustic bass", "upright bass", "double bass"), ("contrabass",)),
    _I("electric_bass", 33, "bass", 28, 55, ("electric bass", "bass guitar"), ("fingerstyle bass",)),
    _I("fretless_bass", 35, "bass", 28, 55, ("fretless bass",)),
    _I("slap_bass", 36, "bass", 28, 55, ("slap bass", "funk slap bass")),
    _I("synth_bass", 38, "bass", 28, 55, ("synth bass", "synthesizer bass"), ("analog bass",)),
    _I("violin", 40, "strings", 55, 96, ("violin",), ()),
    _I("viola", 41, "strings", 48, 84, ("viola",)),
    _I("cello", 42, "strings", 36, 72, ("cello",), ("violoncello",)),
    _I("string_ensemble", 48, "strings", 36, 96, ("string ensemble", "strings"), ("string section",)),
    _I("trumpet", 56, "brass", 55, 82, ("trumpet",)),
    _I("trombone", 57, "brass", 40, 72, ("trombone",), ("slide trombone",)),
    _I("tuba", 58, "brass", 28, 58, ("tuba",)),
    _I("french_horn", 60, "brass", 41, 77, ("French horn", "horn"), ("orchestral horn",)),
    _I("brass_section", 61, "brass", 40, 82, ("brass section", "brass"), ("horn section",)),
    _I("alto_sax", 65, "woodwind", 49, 81, ("alto sax", "alto saxophone"), ("E-flat sax",)),
    _I("tenor_sax", 66, "woodwind", 44, 75, ("tenor sax", "tenor saxophone")),
    _I("oboe", 68, "woodwind", 58, 91, ("oboe",), ("hautbois",)),
    _I("bassoon", 70, "woodwind", 34, 72, ("bassoon",)),
    _I("clarinet", 71, "woodwind", 50, 91, ("clarinet",), ("B-flat clarinet",)),
    _I("flute", 73, "woodwind", 60, 96, ("flute",), ("concert flute",)),
    _I("recorder", 74, "woodwind", 60, 96, ("recorder",), ("block flute",)),
    _I("marimba", 12, "mallets", 45, 96, ("marimba",)),
    _I("vibraphone", 11, "mallets", 53, 89, ("vibraphone", "vibes"), ("vibraharp",)),
    _I("celesta", 8, "mallets", 60, 108, ("celesta",)),
    _I("glockenspiel", 9, "mallets", 79, 108, ("glockenspiel",), ("orchestra bells",)),
    _I("xylophone", 13, "mallets", 65, 108, ("xylophone",)),
    _I("square_lead", 80, "synth", 36, 96, ("square-wave synth lead", "synth lead"), ("chiptune lead",)),
    _I("saw_lead", 81, "synth", 36, 96, ("sawtooth synth", "saw lead"), ("supersaw",)),
    _I("warm_pad", 89, "synth", 36, 91, ("warm synth pad", "synth pad"), ("ambient pad",)),
    _I("choir", 52, "voice", 43, 84, ("choir", "choir aahs", "vocal ensemble"), ("chorus of voices",)),
]}

# Ensembles: several instruments playing a multi-part score; the family is the ensemble's.
ENSEMBLES = {
    "string_quartet": (("violin", "violin", "viola", "cello"), "strings",
                       ("string quartet", "strings"), ("string foursome",)),
    "piano": (("piano",) * 4, "piano", ("solo piano", "piano"), ("pianoforte",)),
    "organ": (("church_organ",) * 4, "keys", ("church organ", "pipe organ"), ("cathedral organ",)),
    "brass_quartet": (("trumpet", "trumpet", "trombone", "tuba"), "brass",
                      ("brass quartet", "brass ensemble"), ("horn section",)),
    "woodwind_quartet": (("flute", "oboe", "clarinet", "bassoon"), "woodwind",
                         ("woodwind quartet", "woodwinds"), ("wind ensemble",)),
    "choir": (("choir",) * 4, "voice", ("choir", "vocal ensemble"), ("chorus of voices",)),
    "recorder_consort": (("recorder", "recorder", "recorder", "bassoon"), "woodwind",
                         ("recorder consort", "recorders"), ("block flute consort",)),
}

# Drum kits (bank 128 programs in FluidR3 GM), for the drums channel (index 9).
KITS = {
    "standard": (0, ("standard kit", "standard drum kit"), ("studio kit",)),
    "room": (8, ("room kit", "roomy drum kit"), ("ambient kit",)),
    "power": (16, ("power kit", "rock kit"), ("arena kit",)),
    "electronic": (24, ("electronic kit", "electronic drums"), ("synthetic kit",)),
    "tr808": (25, ("808 kit", "TR-808 drum machine"), ("classic drum machine",)),
    "jazz": (32, ("jazz kit", "jazz drums"), ("bebop kit",)),
    "brush": (40, ("brush kit", "brushed drums"), ("brushes",)),
}

DRUM = {"kick": 36, "snare": 38, "rim": 37, "clap": 39, "hat": 42, "pedal_hat": 44, "open_hat": 46,
        "ride": 51, "ride_bell": 53, "crash": 49, "tom_low": 45, "tom_mid": 47, "tom_high": 50,
        "cowbell": 56, "shaker": 70, "side_stick": 37}

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def note_name(midi: int) -> str:
    """60 -> 'C4'."""
    return f"{PITCH_NAMES[midi % 12]}{midi // 12 - 1}"


def tempo_band(bpm: float | None) -> str:
    """The evaluation label of a tempo: slow (< 90 BPM), moderate (90-119), fast (>= 120), none (no pulse)."""
    if bpm is None:
        return "none"
    return "slow" if bpm < 90 else "moderate" if bpm < 120 else "fast"
