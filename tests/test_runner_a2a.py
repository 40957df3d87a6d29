"""Audio-to-audio in the native runner (issue 16): --init-audio FILE.wav, --init-noise-level S, --vae-noise FILE.npy.

The runner must give what edgegen's BundlePipeline gives (`GenerateRequest(..., init_audio=(sr, audio), init_noise_level=S)`)
on the same bundle: the init audio read like soundfile and prepared like edgegen.init_audio.prepare_init_audio
(resampled, cropped or padded, mono duplicated), encoded by the bundle's encoder artifact, noised with the seed's VAE
noise (slice `steps` of gaussian_noise(seed, (steps + 1, 64, T))) and sampled from S on the truncated schedule. S = 1
is text-to-audio for the same seed. A toy ExecuTorch bundle (tests/test_runner.py's, plus a toy encoder) covers the
CLI, the WAV reader and the bad inputs in seconds; random:tiny bundles exported with --audio-to-audio cover both
backends end to end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from edgegen.bundle_pipeline import BundlePipeline
from edgegen.init_audio import prepare_init_audio, read_init_audio
from edgegen.noise import gaussian_noise
from edgegen.request import GenerateRequest
from tests.test_runner import (D, HOP, PROMPT, SECONDS, STEPS, T, _edit_manifest, _lower, _spec, read_wav, run_runner,
                               stream_bundle, toy_bundle)

pytestmark = pytest.mark.executorch

N = T * HOP  # samples the toy encoder takes (0.37 s at 44.1 kHz)
NO_ENCODER = "edgegen-runner: error: this bundle has no encoder artifact; export it with `edgegen export --audio-to-audio`\n"
__all__ = ["stream_bundle", "toy_bundle"]  # fixtures, imported for the bundles below


class ToyEncoder(nn.Module):
    """audio [1, 2, N] -> latent_mean, latent_std [1, D, T]: 16 band means per channel and frame, one Linear."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2 * 16, 2 * D)

    def forward(self, audio):
        frames = audio.view(1, 2, T, 16, HOP // 16).mean(-1).permute(0, 2, 1, 3).reshape(1, T, 32)  # (1, T, 32)
        mean, scale = self.proj(4.0 * frames).transpose(1, 2).chunk(2, dim=1)  # (1, D, T) each
        return mean, F.softplus(scale) + 1e-4


def add_encoder(bundle: Path, out: Path) -> Path:
    """A copy of `bundle` plus an encoder artifact (the export contract: audio [1, 2, T * hop] -> mean, std)."""
    shutil.copytree(bundle, out)
    torch.manual_seed(3)
    data = _lower(ToyEncoder(), (0.3 * torch.randn(1, 2, N),))
    (out / "encoder.pte").write_bytes(data)
    ins = [{**_spec("audio", "float32", [1, 2, N]), "index": 0}]
    outs = [_spec("latent_mean", "float32", [1, D, T]), _spec("latent_std", "float32", [1, D, T])]
    _edit_manifest(out, lambda m: m["artifacts"].update(encoder={"file": "encoder.pte", "sha256": hashlib.sha256(data).hexdigest(),
                                                                 "size": len(data), "inputs": ins, "outputs": outs}))
    return out


@pytest.fixture(scope="session")
def a2a_bundle(toy_bundle, tmp_path_factory) -> Path:
    return add_encoder(toy_bundle, tmp_path_factory.mktemp("a2a_bundle") / "bundle")


@pytest.fixture(scope="session")
def a2a_stream_bundle(stream_bundle, tmp_path_factory) -> Path:
    """The streamed toy (schema 2, decoder windows of 5 frames) with the encoder: it still takes all T * hop samples."""
    return add_encoder(stream_bundle[0], tmp_path_factory.mktemp("a2a_stream") / "bundle")


def write_wav(path: Path, audio: np.ndarray, sr: int = 44100, subtype: str = "FLOAT", fmt: str = "WAV") -> Path:
    """audio [channels, n] as a WAV file of `subtype`."""
    sf.write(str(path), np.ascontiguousarray(audio.T), sr, subtype=subtype, format=fmt)
    return path


def tone(n: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """float32 [channels, n] in (-1, 1): a chirp plus noise, so resampling has something to band-limit."""
    k = np.arange(n) / 44100
    rng = np.random.default_rng(seed)
    x = 0.5 * np.sin(2 * np.pi * (220 + 4000 * k) * k)[None] + 0.2 * rng.standard_normal((channels, n))
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def a2a(runner: Path, bundle: Path, out: Path, init: Path, *extra: str, seconds: float = SECONDS):
    return run_runner([str(runner)], bundle, out, "--init-audio", str(init), "--threads", "2", *extra, seconds=seconds)


def report(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def python_prepared(path: Path, sample_rate: int = 44100, length: int = N) -> tuple[np.ndarray, list[str]]:
    prepared, notes = prepare_init_audio(*read_init_audio(path), sample_rate=sample_rate, length=length)
    return prepared[0].numpy(), notes


def assert_refused(proc, out_dir: Path, line: str | None = None) -> None:
    """One error line, exit 2, nothing written."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: "), proc.stderr
    if line is not None:
        assert proc.stderr == line
    assert list(out_dir.iterdir()) == []


# --- the toy bundle: sampling, dumps and the report --------------------------------------------------------------

@pytest.mark.parametrize("level", [0.5, 0.3, 1.0])
def test_runner_equals_bundle_pipeline(host_runner, a2a_bundle, tmp_path, level):
    audio = tone(13230)  # 0.3 s at the model's rate: padded to N
    init = write_wav(tmp_path / "init.wav", audio)
    proc = a2a(host_runner, a2a_bundle, tmp_path / "out.wav", init, "--seed", "7", "--init-noise-level", str(level),
               "--dump", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "edgegen-runner: note: init audio (0.30 s) padded with silence to the model's 0.37 s\n"
    ref = BundlePipeline.open(a2a_bundle, threads=2).generate(GenerateRequest(PROMPT, seconds=SECONDS, seed=7,
                                                                              init_audio=(44100, audio), init_noise_level=level))
    np.testing.assert_array_equal(read_wav(tmp_path / "out.wav"), ref)
    d = tmp_path / "d"
    prepared, _ = python_prepared(init)
    np.testing.assert_array_equal(np.load(d / "init_audio.npy"), prepared)
    seeded = gaussian_noise(7, (STEPS + 1, D, T))
    np.testing.assert_array_equal(np.load(d / "noise.npy"), seeded[:STEPS])
    np.testing.assert_array_equal(np.load(d / "vae_noise.npy"), seeded[STEPS:])
    from executorch.runtime import Runtime  # the encoder artifact alone: mean + std * vae noise

    encoder = Runtime.get().load_program(str(a2a_bundle / "encoder.pte")).load_method("forward")
    mean, std = encoder.execute([torch.from_numpy(prepared)[None]])
    np.testing.assert_array_equal(np.load(d / "init_latents.npy"), (mean + std * torch.from_numpy(seeded[STEPS:])).numpy())
    rep = report(proc)
    assert list(rep["stages"]) == ["load", "encoder", "text_encoder", "dit", "decoder"]
    assert rep["init_noise_level"] == level and 0 < rep["stages"]["encoder"] < rep["e2e_s"]


def test_streamed_bundle_equals_bundle_pipeline(host_runner, a2a_stream_bundle, tmp_path):
    audio = tone(N + 500, channels=1)  # cropped to T * decoder_stream.hop, mono duplicated
    init = write_wav(tmp_path / "init.wav", audio, subtype="PCM_24")
    proc = a2a(host_runner, a2a_stream_bundle, tmp_path / "out.wav", init, "--seed", "2", "--init-noise-level", "0.6")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stderr.splitlines()) == 2 and report(proc)["decoder_calls"] == 2
    ref = BundlePipeline.open(a2a_stream_bundle, threads=2).generate(GenerateRequest(PROMPT, seconds=SECONDS, seed=2,
                                                                                     init_audio=read_init_audio(init), init_noise_level=0.6))
    np.testing.assert_array_equal(read_wav(tmp_path / "out.wav"), ref)


def test_level_one_is_text_to_audio(host_runner, toy_bundle, a2a_bundle, tmp_path):
    """S = 1 replaces the init audio entirely: the same samples as text-to-audio with the same seed, on the bundle
    with the encoder and on the one without; text-to-audio runs keep their report keys (no encoder stage)."""
    init = write_wav(tmp_path / "init.wav", tone(N))
    one = a2a(host_runner, a2a_bundle, tmp_path / "one.wav", init, "--seed", "5", "--init-noise-level", "1")
    assert one.returncode == 0 and one.stderr == "", one.stderr
    runs = {}
    for name, bundle in (("with_encoder", a2a_bundle), ("without", toy_bundle)):
        proc = run_runner([str(host_runner)], bundle, tmp_path / f"{name}.wav", "--seed", "5", "--threads", "2")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        rep = report(proc)
        assert set(rep["stages"]) == {"load", "text_encoder", "dit", "decoder"} and rep["init_noise_level"] == 1
        runs[name] = read_wav(tmp_path / f"{name}.wav")
    np.testing.assert_array_equal(read_wav(tmp_path / "one.wav"), runs["with_encoder"])
    np.testing.assert_array_equal(runs["with_encoder"], runs["without"])
    half = a2a(host_runner, a2a_bundle, tmp_path / "half.wav", init, "--seed", "5")  # default S = 0.5
    assert half.returncode == 0 and report(half)["init_noise_level"] == 0.5
    assert not np.array_equal(read_wav(tmp_path / "half.wav"), runs["with_encoder"])


def test_injected_noise(host_runner, a2a_bundle, tmp_path):
    """--noise and --vae-noise replace the seed's draws; --noise alone keeps the seed's VAE noise slice."""
    audio = tone(N, seed=1)
    init = write_wav(tmp_path / "init.wav", audio)
    rng = np.random.default_rng(4)
    noise, vae = (rng.standard_normal(s).astype(np.float32) for s in ((STEPS, D, T), (1, D, T)))
    np.save(tmp_path / "noise.npy", noise)
    np.save(tmp_path / "vae.npy", vae)
    proc = a2a(host_runner, a2a_bundle, tmp_path / "a.wav", init, "--noise", str(tmp_path / "noise.npy"), "--vae-noise",
               str(tmp_path / "vae.npy"), "--init-noise-level", "0.7", "--dump", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    bp = BundlePipeline.open(a2a_bundle, threads=2)
    ref = bp.generate(GenerateRequest(PROMPT, seconds=SECONDS, noise=noise, vae_noise=vae, init_audio=(44100, audio),
                                      init_noise_level=0.7))
    np.testing.assert_array_equal(read_wav(tmp_path / "a.wav"), ref)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "vae_noise.npy"), vae)
    proc = a2a(host_runner, a2a_bundle, tmp_path / "b.wav", init, "--noise", str(tmp_path / "noise.npy"), "--seed", "9",
               "--dump", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "vae_noise.npy"), gaussian_noise(9, (STEPS + 1, D, T))[STEPS:])
    ref = bp.generate(GenerateRequest(PROMPT, seconds=SECONDS, seed=9, noise=noise, init_audio=(44100, audio),
                                      init_noise_level=0.5))
    np.testing.assert_array_equal(read_wav(tmp_path / "b.wav"), ref)


# --- reading and preparing the init audio ------------------------------------------------------------------------

@pytest.mark.parametrize("subtype, fmt, channels", [
    ("FLOAT", "WAV", 2), ("PCM_16", "WAV", 2), ("PCM_24", "WAV", 1), ("PCM_32", "WAV", 2), ("DOUBLE", "WAV", 2),
    ("PCM_U8", "WAV", 1), ("PCM_24", "WAVEX", 3), ("FLOAT", "WAVEX", 2),
])
def test_wav_encodings_read_like_soundfile(host_runner, a2a_bundle, tmp_path, subtype, fmt, channels):
    """Each sample reads to soundfile's float32 (int16 / 32768, int24 / 2^23, int32 / 2^31, ...): at the model's rate
    and length the prepared audio is exactly Python's, and each change is one note line, Python's words."""
    audio = tone(N, channels)
    audio[0, :4] = [-1.0, 1.0, 0.999, -0.5]  # full scale: clipped by soundfile's writer
    init = write_wav(tmp_path / "init.wav", audio, subtype=subtype, fmt=fmt)
    proc = a2a(host_runner, a2a_bundle, tmp_path / "o.wav", init, "--dump", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    prepared, notes = python_prepared(init)
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "init_audio.npy"), prepared)
    assert proc.stderr.splitlines() == [f"edgegen-runner: note: {n}" for n in notes]
    assert len(notes) == (channels != 2)


@pytest.mark.parametrize("rate, channels, seconds", [
    (48000, 2, 0.3), (22050, 1, 0.2), (8000, 2, 0.5), (96000, 2, 1.0), (32000, 1, 0.37), (44100, 2, 1.0), (11025, 2, 0.1),
])
def test_resampled_init_audio_is_close_to_python(host_runner, a2a_bundle, tmp_path, rate, channels, seconds):
    """Another rate is resampled with Python's windowed sinc (kernel in float64, applied in float32; only the float32
    summation order differs from torch's conv1d), then cropped or padded: same notes, same audio to 1e-5."""
    n = round(rate * seconds)
    audio = tone(n, channels)
    init = write_wav(tmp_path / "init.wav", audio, sr=rate)
    proc = a2a(host_runner, a2a_bundle, tmp_path / "o.wav", init, "--dump", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    prepared, notes = python_prepared(init)
    assert proc.stderr.splitlines() == [f"edgegen-runner: note: {n}" for n in notes]
    got = np.load(tmp_path / "d" / "init_audio.npy")
    assert got.shape == prepared.shape == (2, N)
    err = float(np.abs(got.astype(np.float64) - prepared).max()) / float(np.abs(prepared).max())
    assert err <= 1e-5, err
    if rate == 44100:  # no resampling: cropped, the start kept, exactly
        np.testing.assert_array_equal(got, audio[:, :N])


# --- bad input: one line, exit 2, nothing written -----------------------------------------------------------------

def _bad_file(tmp_path: Path, case: str) -> Path:
    p = tmp_path / "in" / "init.wav"
    p.parent.mkdir(exist_ok=True)
    good = tone(1000)
    if case == "missing":
        return p
    if case == "directory":
        p.mkdir()
    elif case == "text":
        p.write_text("not audio at all, just words\n" * 10)
    elif case == "truncated_header":
        p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    elif case == "ulaw":
        write_wav(p, good, subtype="ULAW")
    elif case == "flac":
        write_wav(p, good, subtype="PCM_16", fmt="FLAC")
    elif case == "empty":
        write_wav(p, good[:, :0])
    elif case in ("nan", "inf"):
        good[1, 500] = np.nan if case == "nan" else -np.inf
        write_wav(p, good)
    return p


@pytest.mark.parametrize("case, says", [
    ("missing", "no such file"), ("directory", "not a regular file"), ("text", "not a WAV file"),
    ("truncated_header", "'fmt '"), ("ulaw", "unsupported WAV encoding"), ("flac", "not a WAV file"),
    ("empty", "holds no samples"), ("nan", "holds 1 non-finite sample(s)"), ("inf", "holds 1 non-finite sample(s)"),
])
def test_bad_init_audio_is_refused(host_runner, a2a_bundle, tmp_path, case, says):
    init = _bad_file(tmp_path, case)
    out = tmp_path / "out"
    out.mkdir()
    proc = a2a(host_runner, a2a_bundle, out / "x.wav", init, "--dump", str(out / "d"))
    assert_refused(proc, out)
    assert proc.stderr.startswith(f"edgegen-runner: error: --init-audio {init}") and says in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, says", [
    (["--init-noise-level", "0"], "out of range"), (["--init-noise-level", "1.5"], "out of range"),
    (["--init-noise-level", "-0.2"], "out of range"), (["--init-noise-level", "nan"], "out of range"),
    (["--init-noise-level", "inf"], "out of range"), (["--init-noise-level", "half"], "expects a number"),
    (["--vae-noise", "VAE_SHAPE"], "has shape [1, 64, 9]"), (["--vae-noise", "VAE_NAN"], "non-finite"),
    (["--vae-noise", "nope.npy"], "does not exist"),
])
def test_bad_level_or_vae_noise_is_refused(host_runner, a2a_bundle, tmp_path, args, says):
    init = write_wav(tmp_path / "init.wav", tone(N))
    np.save(tmp_path / "vae_shape.npy", np.zeros((1, D, T + 1), np.float32))
    bad = np.zeros((1, D, T), np.float32)
    bad[0, 3, 2] = np.nan
    np.save(tmp_path / "vae_nan.npy", bad)
    args = [str(tmp_path / a.lower()) + ".npy" if a in ("VAE_SHAPE", "VAE_NAN") else a for a in args]
    out = tmp_path / "out"
    out.mkdir()
    proc = a2a(host_runner, a2a_bundle, out / "x.wav", init, *args, "--dump", str(out / "d"))
    assert_refused(proc, out)
    assert says in proc.stderr, proc.stderr


@pytest.mark.parametrize("args", [["--init-noise-level", "0.5"], ["--vae-noise", "v.npy"]])
def test_level_or_vae_noise_without_init_audio_is_refused(host_runner, a2a_bundle, tmp_path, args):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_runner([str(host_runner)], a2a_bundle, out / "x.wav", *args)
    assert_refused(proc, out)
    assert "needs --init-audio FILE.wav" in proc.stderr


def test_bundle_without_encoder_is_refused(host_runner, toy_bundle, tmp_path):
    init = write_wav(tmp_path / "init.wav", tone(N))
    out = tmp_path / "out"
    out.mkdir()
    assert_refused(a2a(host_runner, toy_bundle, out / "x.wav", init), out, NO_ENCODER)


BAD_ENCODERS = {
    "sha": lambda b: (b / "encoder.pte").write_bytes(bytes(reversed((b / "encoder.pte").read_bytes()))),
    "missing": lambda b: (b / "encoder.pte").unlink(),
    "audio_length": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["encoder"]["inputs"][0].update(shape=[1, 2, N - HOP])),
    "output_renamed": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["encoder"]["outputs"][1].update(name="latent_scale")),
    "outside": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["encoder"].update(file="../encoder.pte")),
}


@pytest.mark.parametrize("case", sorted(BAD_ENCODERS))
def test_bad_encoder_artifact_is_refused(host_runner, a2a_bundle, tmp_path, case):
    """The encoder entry is verified like the other three (contract by name, size, sha256, path), text-to-audio too."""
    bundle = tmp_path / "bundle"
    shutil.copytree(a2a_bundle, bundle)
    shutil.copy(bundle / "encoder.pte", tmp_path / "encoder.pte")
    BAD_ENCODERS[case](bundle)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_runner([str(host_runner)], bundle, out / "x.wav")
    assert_refused(proc, out)
    assert "encoder" in proc.stderr, proc.stderr


# --- real bundles: random:tiny exported with --audio-to-audio, both backends ------------------------------------

ALL = ("text_encoder", "dit", "decoder", "encoder")


@pytest.mark.parametrize("backend", ["executorch", pytest.param("litert", marks=pytest.mark.litert)])
def test_exported_bundle_matches_bundle_pipeline(host_runner, bundle_factory, tmp_path, backend):
    """`edgegen export --audio-to-audio` bundles: the runner's samples are BundlePipeline's, bit for bit, at S = 0.4;
    S = 1 is text-to-audio; a 48 kHz mono take is prepared as Python prepares it (1e-5)."""
    bundle = bundle_factory(backend, "fp32", components=ALL)
    sr = json.loads((bundle / "manifest.json").read_text())["sample_rate"]
    audio = tone(sr // 2)
    init = write_wav(tmp_path / "init.wav", audio, sr=sr)
    bp = BundlePipeline.open(bundle, threads=2)
    for level in ("0.4", "1"):
        proc = a2a(host_runner, bundle, tmp_path / "o.wav", init, "--seed", "3", "--init-noise-level", level, seconds=0.5)
        assert proc.returncode == 0, proc.stderr
        ref = bp.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3, init_audio=(sr, audio),
                                          init_noise_level=float(level)))
        np.testing.assert_array_equal(read_wav(tmp_path / "o.wav"), ref)
        assert report(proc)["backend"] == backend and "encoder" in report(proc)["stages"]
    np.testing.assert_array_equal(ref, bp.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3)))
    take = write_wav(tmp_path / "take.wav", tone(48000 // 3, channels=1), sr=48000, subtype="PCM_16")
    proc = a2a(host_runner, bundle, tmp_path / "t.wav", str(take), "--dump", str(tmp_path / "d"), seconds=0.5)
    assert proc.returncode == 0, proc.stderr
    length = np.load(tmp_path / "d" / "init_audio.npy").shape[1]
    prepared, notes = python_prepared(take, sample_rate=sr, length=length)
    assert proc.stderr.splitlines() == [f"edgegen-runner: note: {n}" for n in notes] and len(notes) == 3
    got = np.load(tmp_path / "d" / "init_audio.npy")
    assert float(np.abs(got.astype(np.float64) - prepared).max()) <= 1e-5 * float(np.abs(prepared).max())
