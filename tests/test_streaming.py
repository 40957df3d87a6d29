"""Streaming decode: derived receptive field vs an impulse test, window plans, and stitched == whole decode."""

import inspect

import pytest
import torch

from edgegen.components.oobleck import OOBLECK_CONFIGS, OobleckConfig, OobleckDecoder
from edgegen.metrics import compare
from edgegen.presets import randomize_
from edgegen.streaming import decode_stream, default_window, footprint, frames_to_decode, plan_windows, receptive_field

# a different stride stack (hop 64) so the derivation is checked on more than one architecture
MID = OobleckConfig(channels=8, c_mults=(1, 2, 4), strides=(2, 4, 8))


@pytest.fixture(scope="module")
def mid_decoder():
    dec = OobleckDecoder(MID).eval()
    randomize_(dec, seed=3)
    return dec


def test_receptive_field_values():
    # a property of the stride/kernel stack, not of the width: SAO-small's five blocks at 10 frames, random:tiny's
    # two (strides 32 then 64 in the decoder, the same 2048 hop) at 5
    assert footprint(OOBLECK_CONFIGS["sao-small"]) == (18981, 18981)
    assert receptive_field(OOBLECK_CONFIGS["sao-small"]) == receptive_field(OobleckConfig(channels=8)) == 10
    assert footprint(OOBLECK_CONFIGS["tiny"]) == (9738, 9738) and receptive_field(OOBLECK_CONFIGS["tiny"]) == 5
    assert receptive_field(MID) == 11
    assert default_window(10) == (60, 10)  # 360 decoded frames of 256; 48 would decode 432
    assert default_window(10, length=64) == (40, 10)


@pytest.mark.parametrize("which", ["tiny", "mid"])
@torch.no_grad()
def test_receptive_field_matches_impulse(which, tiny, mid_decoder):
    dec = tiny.decoder if which == "tiny" else mid_decoder
    hop, rf = dec.config.hop, receptive_field(dec)
    left, right = footprint(dec)
    j, T = rf, 2 * rf + 1  # the perturbed frame's whole footprint fits inside the sequence
    x = torch.randn(1, dec.config.latent_dim, T, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, :, j] += 1.0
    changed = torch.nonzero((dec(x) - dec(y)).abs().amax(dim=(0, 1)) > 0).flatten()
    got_left, got_right = j * hop - changed.min().item(), changed.max().item() - ((j + 1) * hop - 1)
    assert got_left <= left and got_right <= right  # the derived bound holds ...
    assert got_left > 0.99 * left and got_right > 0.99 * right  # ... and is tight (float rounding eats the tail)
    assert -(-max(got_left, got_right) // hop) == rf


def _check_plan(length, window, overlap):
    plan = plan_windows(length, window=window, overlap=overlap)
    assert plan[0].keep_start == 0 and plan[-1].keep_end == length
    for a, b in zip(plan, plan[1:]):
        assert a.keep_end == b.keep_start  # kept spans tile [0, length)
    for w in plan:
        assert 0 <= w.start <= w.keep_start < w.keep_end <= w.end <= length
        assert w.end - w.start == min(window, length)  # static shape
        assert w.start == 0 or w.keep_start - w.start >= overlap
        assert w.end == length or w.end - w.keep_end >= overlap
    return plan


def test_plan_windows_properties():
    for length in (1, 5, 21, 22, 40, 63, 64, 65, 100, 256):
        for window, overlap in ((21, 10), (24, 10), (32, 10), (64, 10), (5, 0), (3, 1)):
            _check_plan(length, window, overlap)
    plan = _check_plan(256, 64, 10)
    assert [w.keep_end - w.keep_start for w in plan] == [54, 44, 44, 44, 44, 26]
    assert plan[-1].start == 192  # the last window is shifted left, not padded


def test_plan_windows_short_sequence_is_one_window():
    assert plan_windows(16, window=64, overlap=10) == [(0, 16, 0, 16)]


@pytest.mark.parametrize("window, overlap, match", [(20, 10, "must exceed 2"), (21, -1, "overlap must be >= 0")])
def test_plan_windows_rejects_bad_overlap(window, overlap, match):
    with pytest.raises(ValueError, match=match):
        plan_windows(64, window=window, overlap=overlap)
    with pytest.raises(ValueError, match="length"):
        plan_windows(0, window=64, overlap=10)


def test_decode_stream_is_lazy():
    calls = []

    def decoder(x):  # [1, C, w] -> [1, 2, w * 4]
        calls.append(x.shape[-1])
        return x[:, :2].repeat_interleave(4, dim=-1)

    x = torch.randn(1, 3, 100)
    gen = decode_stream(decoder, x, window=30, overlap=5, hop=4)
    assert inspect.isgenerator(gen) and calls == []
    first = next(gen)
    assert calls == [30] and first.shape == (1, 2, 25 * 4)
    chunks = [first, *gen]
    assert set(calls) == {30} and sum(c.shape[-1] for c in chunks) == 100 * 4
    assert torch.equal(torch.cat(chunks, dim=-1), x[:, :2].repeat_interleave(4, dim=-1))


@pytest.mark.parametrize("which, T, window", [("tiny", 64, 21), ("tiny", 48, 28), ("mid", 64, 32)])
@torch.no_grad()
def test_stream_matches_whole_decode(which, T, window, tiny, mid_decoder):
    """Several windows each (the smallest legal window 2 rf + 1 among them), stitched vs one whole decode."""
    dec = tiny.decoder if which == "tiny" else mid_decoder
    hop, rf = dec.config.hop, receptive_field(dec)
    x = torch.randn(1, dec.config.latent_dim, T, generator=torch.Generator().manual_seed(1))
    chunks = list(decode_stream(dec, x, window=window, overlap=rf, hop=hop))
    assert len(chunks) == len(plan_windows(T, window=window, overlap=rf)) >= 2
    assert sum(c.shape[-1] for c in chunks) == T * hop
    assert compare(dec(x), torch.cat(chunks, dim=-1)).sqnr_db >= 60


def test_frames_to_decode():
    # enough frames for the samples plus the overlap, never fewer than one window, never more than the sequence
    assert frames_to_decode(10 * 44100, length=256, window=48, overlap=10, hop=2048) == 216 + 10
    assert frames_to_decode(1, length=256, window=48, overlap=10, hop=2048) == 48
    assert frames_to_decode(256 * 2048, length=256, window=48, overlap=10, hop=2048) == 256


@torch.no_grad()
def test_decode_stream_samples_decodes_only_what_is_needed(tiny):
    dec, hop = tiny.decoder, tiny.decoder.config.hop
    x = torch.randn(1, 64, 48, generator=torch.Generator().manual_seed(2))
    calls = []

    def counted(z):
        calls.append(z.shape[-1])
        return dec(z)

    samples = 17 * hop + 5
    chunks = list(decode_stream(counted, x, window=24, overlap=10, hop=hop, samples=samples))
    assert sum(c.shape[-1] for c in chunks) == samples
    assert calls == [24, 24]  # 28 frames needed: [0,24) and the last window shifted to end at 28, not 48
    assert compare(dec(x)[:, :, :samples], torch.cat(chunks, dim=-1)).sqnr_db >= 60


def test_abandoned_decode_stream_leaves_grad_enabled(tiny):
    """A consumer that stops after the first chunk (as `generate` does when a later chunk holds NaN) must not be
    left with autograd switched off by the generator's no_grad."""
    chunks = tiny.decode_stream(torch.randn(1, 64, tiny.latent_length), window=21)
    next(chunks)
    assert torch.is_grad_enabled()
    del chunks
    assert torch.is_grad_enabled()
