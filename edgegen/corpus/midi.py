"""A minimal Standard MIDI File writer: notes in seconds -> a format-0 file fluidsynth renders.

The file's tempo is fixed at 120 BPM with 480 ticks per quarter, so one tick is 1/960 s: musical tempo is applied
before (note times are in seconds), and the bytes depend only on the notes, never on a library's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = 960
DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Note:
    t: float          # onset, seconds
    dur: float        # seconds (> 0)
    pitch: int        # MIDI 0..127
    vel: int          # 1..127
    ch: int = 0       # MIDI channel 0..15 (9 = drums)


@dataclass(frozen=True)
class Channel:
    ch: int
    program: int
    pan: int = 64     # 0 left .. 127 right
    volume: int = 100
    reverb: int = 40  # CC 91 send


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[Note], channels: list[Channel], *, end: float) -> bytes:
    """The SMF bytes: channel setup at tick 0, the notes, and an end-of-track at `end` seconds (so the render lasts
    at least that long)."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order, message); note-offs sort before note-ons
    for c in channels:
        events.append((0, 0, bytes([0xB0 | c.ch, 7, c.volume])))
        events.append((0, 0, bytes([0xB0 | c.ch, 10, c.pan])))
        events.append((0, 0, bytes([0xB0 | c.ch, 91, c.reverb])))
        events.append((0, 0, bytes([0xB0 | c.ch, 93, 0])))  # no chorus
        events.append((0, 1, bytes([0xC0 | c.ch, c.program])))
    for n in notes:
        on = max(0, round(n.t * TICKS_PER_SECOND))
        off = max(on + 1, round((n.t + n.dur) * TICKS_PER_SECOND))
        pitch, vel = min(127, max(0, n.pitch)), min(127, max(1, n.vel))
        events.append((on + 1, 3, bytes([0x90 | n.ch, pitch, vel])))  # +1: after the setup at tick 0
        events.append((off + 1, 2, bytes([0x80 | n.ch, pitch, 0])))
    end_tick = max(round(end * TICKS_PER_SECOND), max((e[0] for e in events), default=0)) + 1
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    track = bytearray(b"\x00\xFF\x51\x03\x07\xA1\x20")  # tempo 500000 us per quarter = 120 BPM
    last = 0
    for tick, _, msg in events:
        track += _varlen(tick - last) + msg
        last = tick
    track += _varlen(end_tick - last) + b"\xFF\x2F\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + \
        (TICKS_PER_SECOND // 2).to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def write_midi(path: Path, notes: list[Note], channels: list[Channel], *, end: float) -> None:
    Path(path).write_bytes(midi_bytes(notes, channels, end=end))
