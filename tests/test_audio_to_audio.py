"""Audio-to-audio in the reference (issue 16): init audio prepared, encoded, noised to S, sampled on the truncated
schedule. Upstream parity of the whole path is in tests/test_upstream_parity.py (a2a_* arrays of the fixture)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from edgegen.errors import EdgegenError
from edgegen.init_audio import check_init_noise_level, prepare_init_audio, resample
from edgegen.metrics import sqnr_db
from edgegen.request import GenerateRequest
from edgegen.sampler import init_vae_noise, schedule
from tests.helpers import assert_one_error, invoke_cli

PROMPT = "a dog barking"


def _init(pipe, seconds: float | None = None, seed: int = 0) -> np.ndarray:
    """A stereo test signal at the model's rate: two tones and a little noise."""
    n = pipe.latent_length * pipe.config.vae.hop if seconds is None else int(seconds * pipe.sample_rate)
    t = np.arange(n) / pipe.sample_rate
    rng = np.random.default_rng(seed)
    left, right = np.sin(2 * np.pi * 330 * t), np.sin(2 * np.pi * 550 * t)
    return (0.4 * np.stack([left, right]) + 0.03 * rng.standard_normal((2, n))).astype(np.float32)


def test_noise_level_one_is_text_to_audio(tiny):
    t2a = tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3))
    a2a = tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3, init_audio=(tiny.sample_rate, _init(tiny)),
                                        init_noise_level=1.0))
    assert np.array_equal(t2a, a2a)


def test_low_noise_level_stays_closer_to_the_init_audio(tiny):
    """Closeness is measured to the VAE's own reconstruction of the init audio, decode(encode(init)): random VAE
    weights do not reconstruct their input, trained ones do (so with a real checkpoint this is the init audio)."""
    init = _init(tiny)
    z = tiny.encode_audio(torch.from_numpy(init)[None],
                          torch.from_numpy(init_vae_noise(None, seed=3, steps=8, channels=64, length=tiny.latent_length)))
    with torch.no_grad():
        rec = tiny.decoder(z)[0].numpy()

    def dist(wav):
        return float(np.sqrt(((wav - rec[:, : wav.shape[1]]) ** 2).mean()))

    t2a = dist(tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3)))
    low = dist(tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3, init_audio=(tiny.sample_rate, init),
                                             init_noise_level=0.05)))
    assert low < 0.9 * t2a, (low, t2a)


def test_vae_noise_is_the_slice_after_the_chain_noise_and_injectable(tiny):
    from edgegen.noise import gaussian_noise

    T = tiny.latent_length
    default = init_vae_noise(None, seed=5, steps=8, channels=64, length=T)
    assert np.array_equal(default, gaussian_noise(5, (9, 64, T))[8:])
    assert np.array_equal(gaussian_noise(5, (9, 64, T))[:8], gaussian_noise(5, (8, 64, T)))  # chain noise unchanged
    init = (tiny.sample_rate, _init(tiny))
    a = tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=5, init_audio=init, init_noise_level=0.4))
    b = tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=5, init_audio=init, init_noise_level=0.4,
                                      vae_noise=default))
    c = tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=5, init_audio=init, init_noise_level=0.4,
                                      vae_noise=-default))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(EdgegenError, match=r"VAE noise has shape \[1, 64, 3\]"):
        tiny.generate(GenerateRequest(PROMPT, seconds=0.5, init_audio=init, init_noise_level=0.4,
                                      vae_noise=np.zeros((1, 64, 3))))


def test_truncated_schedule():
    full = schedule(8)
    assert np.array_equal(schedule(8, init_noise_level=1.0), full)
    for s in (0.2, 0.5, 0.9):
        part = schedule(8, init_noise_level=s)
        assert part[0] == np.float32(s) and part[-1] == 0 and np.all(np.diff(part) < 0)  # falls from S
        # upstream 0.0.19 sample_rf: logSNR uniform from log((1 - S) / S + 1e-6) to 2
        logsnr = np.linspace(math.log((1 - s) / s + 1e-6), 2.0, 9)
        np.testing.assert_allclose(part[1:-1], 1 / (1 + np.exp(logsnr[1:-1])), rtol=1e-6)
        assert abs(1 / (1 + math.exp(logsnr[0])) - s) < 1e-6  # the walk starts at S itself


@pytest.mark.parametrize("orig", [16000, 22050, 48000, 44101])
def test_resampler_keeps_a_tone(orig):
    n = orig  # one second
    x = torch.sin(2 * math.pi * 1000 * torch.arange(n, dtype=torch.float64) / orig).float()[None]
    y = resample(x, orig, 44100)
    assert y.shape == (1, 44100)
    ref = torch.sin(2 * math.pi * 1000 * torch.arange(44100, dtype=torch.float64) / 44100).float()[None]
    inner = slice(1000, -1000)  # the ends see the zero padding
    snr = sqnr_db(ref[:, inner], y[:, inner])
    assert snr > 60, snr


def test_prepare_crops_pads_and_duplicates_with_notes():
    x = np.arange(10, dtype=np.float32)
    out, notes = prepare_init_audio(100, x, sample_rate=100, length=6)
    assert out.shape == (1, 2, 6) and np.array_equal(out[0, 0].numpy(), x[:6]) and np.array_equal(out[0, 1], out[0, 0])
    assert any("cropped" in n for n in notes) and any("mono" in n for n in notes)
    out, notes = prepare_init_audio(100, np.ones((2, 4), np.float32), sample_rate=100, length=6)
    assert np.array_equal(out[0].numpy(), np.array([[1, 1, 1, 1, 0, 0]] * 2, np.float32))
    assert len(notes) == 1 and "padded" in notes[0]
    out, notes = prepare_init_audio(100, np.ones((3, 6), np.float32), sample_rate=100, length=6)
    assert out.shape == (1, 2, 6) and "first 2" in notes[0]
    assert prepare_init_audio(100, np.ones((2, 6), np.float32), sample_rate=100, length=6)[1] == []


@pytest.mark.parametrize("level", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_noise_level_outside_zero_one_is_refused(level):
    with pytest.raises(EdgegenError, match="0 < S <= 1"):
        check_init_noise_level(level)


def _generate(*args):
    return invoke_cli("generate", "-m", "random:tiny", "-p", PROMPT, "-s", "0.5", *args)


def test_cli_audio_to_audio_notes_each_change(tmp_path):
    n = int(0.3 * 22050)
    sf.write(tmp_path / "mono.wav", (0.5 * np.sin(np.arange(n) / 9.0)).astype(np.float32), 22050, subtype="FLOAT")
    res = _generate("--init-audio", tmp_path / "mono.wav", "--init-noise-level", "0.3", "-o", tmp_path / "o.wav")
    assert res.exit_code == 0, res.output
    for words in ("resampled from 22050 Hz", "padded with silence", "mono init audio duplicated"):
        assert f"note: init audio" in res.stderr and words in res.stderr, res.stderr
    assert "encoder" in res.stdout and sf.info(str(tmp_path / "o.wav")).frames == 22050


def _bad_files(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), 44100)
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2], np.float32), 44100, subtype="FLOAT")
    sf.write(tmp_path / "ok.wav", np.zeros((100, 2), np.float32), 44100, subtype="FLOAT")


BAD = {  # case -> (args, words of the one error line)
    "not_audio": (["--init-audio", "text.wav"], "is not a readable audio file"),
    "empty": (["--init-audio", "empty.wav"], "holds no samples"),
    "missing": (["--init-audio", "missing.wav"], "no such file"),
    "non_finite": (["--init-audio", "nan.wav"], "non-finite"),
    "level_zero": (["--init-audio", "ok.wav", "--init-noise-level", "0"], "0 < S <= 1"),
    "level_above_one": (["--init-audio", "ok.wav", "--init-noise-level", "1.01"], "0 < S <= 1"),
    "level_without_audio": (["--init-noise-level", "0.5"], "give --init-audio FILE too"),
    "output_is_the_init": (["--init-audio", "ok.wav", "-o", "ok.wav"], "--init-audio"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_bad_init_audio_one_line_exit_2_nothing_written(tmp_path, monkeypatch, case):
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    args, needle = BAD[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_one_error(_generate(*args, *([] if "-o" in args else ["-o", "out.wav"])), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- bundles with an encoder (export --audio-to-audio), both runtimes ------------------------------------------------

BACKENDS = [pytest.param("executorch", marks=pytest.mark.executorch), pytest.param("litert", marks=pytest.mark.litert)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bundle_audio_to_audio_matches_reference_and_parity_gates_it(tiny, bundle_factory, backend):
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.metrics import rel_err
    from edgegen.parity import check_parity
    from tests.helpers import AUDIO_TO_AUDIO

    bundle = bundle_factory(backend, "fp32", components=AUDIO_TO_AUDIO)
    m = __import__("json").loads((bundle / "manifest.json").read_text())
    enc = m["artifacts"]["encoder"]
    assert [i["name"] for i in enc["inputs"]] == ["audio"] and [o["name"] for o in enc["outputs"]] == ["latent_mean", "latent_std"]
    assert m["recipe"]["components"]["encoder"]["rules"][0]["scheme"] == "fp32"
    init = (tiny.sample_rate, _init(tiny))
    with BundlePipeline.open(bundle) as bp:
        assert "encoder" not in bp.artifacts  # loaded only for the generations that start from init audio
        for level in (0.3, 1.0):
            got = bp.generate(GenerateRequest(PROMPT, seconds=0.5, seed=2, init_audio=init, init_noise_level=level))
            want = tiny.generate(GenerateRequest(PROMPT, seconds=0.5, seed=2, init_audio=init, init_noise_level=level))
            assert rel_err(want, got) <= 1e-4
        assert np.array_equal(got, bp.generate(GenerateRequest(PROMPT, seconds=0.5, seed=2)))  # S = 1 is text-to-audio
        assert "encoder" not in bp.artifacts  # released after its stage
        report = check_parity(bp, tiny).to_json()
    assert report["passed"] and report["components"]["encoder"]["passed"]
    assert report["components"]["encoder"]["metrics"]["rel_err"] <= 1e-4
    row = report["audio_to_audio"]
    assert row["gated"] and row["passed"] and row["init_noise_level"] == 0.5 and row["metrics"]["rel_err"] <= 1e-3


def test_run_and_bench_with_init_audio(bundle_factory, tmp_path):
    import json

    from tests.helpers import AUDIO_TO_AUDIO

    bundle = bundle_factory("executorch", "fp32", components=AUDIO_TO_AUDIO)
    sf.write(tmp_path / "in.wav", np.full((4410, 1), 0.25, np.float32), 44100, subtype="FLOAT")
    res = invoke_cli("run", "-b", bundle, "-p", PROMPT, "-s", "0.5", "--init-audio", tmp_path / "in.wav",
                     "--init-noise-level", "0.4", "-o", tmp_path / "o.wav")
    assert res.exit_code == 0, res.output
    assert "encoder" in res.stdout and "mono init audio duplicated" in res.stderr
    res = invoke_cli("bench", "-b", bundle, "--init-audio", tmp_path / "in.wav", "--iters", "1", "--warmup", "0",
                     "-s", "0.5")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert list(result["stages"]) == ["load", "encoder", "text_encoder", "dit", "decoder"]
    assert result["init_noise_level"] == 0.5 and "encoder" in res.stdout


def test_bundle_without_encoder_refuses_init_audio(bundle_factory, tmp_path):
    sf.write(tmp_path / "in.wav", np.zeros((100, 2), np.float32), 44100, subtype="FLOAT")
    res = invoke_cli("run", "-b", bundle_factory("executorch", "fp32"), "-p", PROMPT, "-s", "0.5", "--init-audio",
                     tmp_path / "in.wav", "-o", tmp_path / "o.wav")
    assert_one_error(res, "has no encoder artifact", "--audio-to-audio")
    assert not (tmp_path / "o.wav").exists()
