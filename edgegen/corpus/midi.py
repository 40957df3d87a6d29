"""MIDI-like events in seconds: the notes and channel set-ups that generators and scores produce and the synth
renders (musical tempo is applied before: note times are in seconds)."""

from __future__ import annotations

from dataclasses import dataclass

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
