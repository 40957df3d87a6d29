"""Bad input through the CLI (issue 17): exit 2, exactly one `edgegen: error:` line naming the problem, no
traceback, and nothing written, replaced or left half-written. Checks that must happen before any work run with a
model/bundle loader that fails loudly, so a check done too late shows up as exit 1, not 2."""

import json
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from edgegen.presets import PRESETS
from edgegen.request import GenerateRequest
from tests.helpers import assert_one_error, invoke_cli, run_cli

LONG_PROMPT = "warm piano " * 80  # 161 tokens with EOS; random:tiny and the bundles take 64


@pytest.fixture
def no_load(monkeypatch):
    """Loading a model or a bundle is a failure (exit 1 with a RuntimeError): the check must come first."""
    import edgegen.bundle_pipeline
    import edgegen.pipeline

    def boom(*args, **kwargs):
        raise RuntimeError("loaded before the output/input checks")

    monkeypatch.setattr(edgegen.pipeline, "load_pipeline", boom)
    monkeypatch.setattr(edgegen.bundle_pipeline.BundlePipeline, "open", boom)


def _gen(out, *extra):
    return ["generate", "-m", "random:tiny", "-p", "x", "-s", "0.3", *extra, "-o", out]


def _fake_bundle(root: Path) -> Path:
    """A folder that only has to exist: every check below fails before a bundle is opened."""
    root.mkdir()
    (root / "manifest.json").write_text("{}")
    (root / "dit.pte").write_bytes(b"program")
    return root


def _snapshot(*paths: Path) -> dict:
    return {p: (p.lstat().st_mode, p.read_bytes() if p.is_file() else None) for p in paths}


# --- 17.3: outputs that are not regular files, or that are inputs --------------------------------------------------

def _make_fifo(p):
    os.mkfifo(p)


def _make_socket(p):
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    return s


@pytest.mark.parametrize("kind,needle", [("fifo", "it is a FIFO"), ("socket", "it is a socket"),
                                         ("device", "it is a character device"), ("symlink", "character device")])
def test_non_regular_output_is_refused_and_kept(tmp_path, no_load, kind, needle):
    out = tmp_path / "out.wav"
    keep = None
    if kind == "fifo":
        _make_fifo(out)
    elif kind == "socket":
        keep = _make_socket(out)
    elif kind == "device":  # our own node for /dev/full's device (root only), so a regression replaces nothing real
        try:
            os.mknod(out, 0o600 | stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("creating a device node needs root")
    else:  # a name that stands for a device
        out.symlink_to("/dev/null")
    before = out.lstat()
    for extra in ((), ("--stream",)):
        assert_one_error(invoke_cli(*_gen(out, *extra)), needle)
        assert_one_error(invoke_cli("run", "-b", tmp_path / "b", "-p", "x", *extra, "-o", out), needle)
    after = out.lstat()
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    if keep is not None:
        keep.close()


def test_folder_output_is_refused(tmp_path, no_load):
    assert_one_error(invoke_cli(*_gen(tmp_path)), "is a directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["noise", "noise-hardlink", "noise-symlink", "noise-missing", "model-file",
                                  "inside-model", "t5-file", "bundle-zip", "bundle-file", "inside-bundle",
                                  "run-noise"])
def test_output_that_is_an_input_is_refused(tmp_path, no_load, case):
    noise = tmp_path / "n.npy"
    np.save(noise, np.zeros((8, 64, 16), np.float32))
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "spiece.model").write_bytes(b"sp")
    bundle = _fake_bundle(tmp_path / "bundle")
    zipped = tmp_path / "bundle.zip"
    zipped.write_bytes(b"PK\x05\x06" + bytes(18))
    gen = lambda out, *extra: ["generate", "-m", model, "--t5", t5, "-p", "x", "--noise", noise, *extra, "-o", out]  # noqa: E731
    run = lambda b, out: ["run", "-b", b, "-p", "x", "--noise", noise, "-o", out]  # noqa: E731
    if case == "noise-hardlink":
        os.link(noise, tmp_path / "hard.wav")
    if case == "noise-symlink":
        (tmp_path / "sym.wav").symlink_to(noise)
    args, needle = {
        "noise": (gen(noise), "it is the --noise input"),
        "noise-hardlink": (gen(tmp_path / "hard.wav"), "it is the --noise input"),
        "noise-symlink": (gen(tmp_path / "sym.wav"), "it is the --noise input"),
        "noise-missing": (["generate", "-m", "random:tiny", "-p", "x", "--noise", tmp_path / "new.npy", "-o",
                           tmp_path / "new.npy"], "it is the --noise input"),
        "model-file": (gen(model / "model.safetensors"), "inside the --model folder"),
        "inside-model": (gen(model / "x.wav"), "inside the --model folder"),
        "t5-file": (gen(t5 / "spiece.model"), "inside the --t5 folder"),
        "bundle-zip": (run(zipped, zipped), "it is the --bundle input"),
        "bundle-file": (run(bundle, bundle / "manifest.json"), "inside the --bundle folder"),
        "inside-bundle": (run(bundle, bundle / "x.wav"), "inside the --bundle folder"),
        "run-noise": (run(bundle, noise), "it is the --noise input"),
    }[case]
    files = [p for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()]
    before = _snapshot(*files)
    assert_one_error(invoke_cli(*args), needle)
    assert _snapshot(*[p for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()]) == before


# --- 17.4: outputs that cannot be written are found before the work ---------------------------------------------------

@pytest.mark.parametrize("out,needle", [("/proc/edgegen-x.wav", "folder /proc does not take new files"),
                                        ("missing/x.wav", "does not exist"),
                                        ("file/x.wav", "folder {tmp}/file is not a folder")])
def test_unwritable_output_is_found_before_loading(tmp_path, no_load, out, needle):
    (tmp_path / "file").write_bytes(b"a file, not a folder")
    out, needle = (out if out.startswith("/") else tmp_path / out), needle.format(tmp=tmp_path)
    for extra in ((), ("--stream",)):
        assert_one_error(invoke_cli(*_gen(out, *extra)), needle)
        assert_one_error(invoke_cli("run", "-b", tmp_path / "b", "-p", "x", *extra, "-o", out), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- 17.6: non-finite numbers are errors, never a file ----------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_noise_is_refused(tmp_path, bad):
    noise = np.random.default_rng(0).standard_normal((8, 64, 16)).astype(np.float32)
    noise[3, 5, 7] = bad
    np.save(tmp_path / "n.npy", noise)
    line = assert_one_error(invoke_cli(*_gen(tmp_path / "a.wav", "--noise", tmp_path / "n.npy")), "non-finite")
    assert str(tmp_path / "n.npy") in line and not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_cfg_scale_is_refused_before_loading(tmp_path, no_load, value):
    assert_one_error(invoke_cli(*_gen(tmp_path / "a.wav", "--cfg-scale", value)), "--cfg-scale")
    assert list(tmp_path.iterdir()) == []


def _nan_after(chunks, good: int):
    for i, chunk in enumerate(chunks):
        yield chunk if i < good else chunk * float("nan")  # torch (reference) or numpy (bundle) chunks


@pytest.mark.parametrize("stream", [False, True])
def test_non_finite_audio_is_an_error_and_keeps_the_old_file(tmp_path, monkeypatch, stream):
    """A NaN in the decoded audio (here in the 2nd of 2 streamed chunks, after the 1st was written to the partial
    file) stops the command; the existing output keeps its bytes and no partial file is left."""
    from edgegen.pipeline import Pipeline

    decode_stream = Pipeline.decode_stream
    monkeypatch.setattr(Pipeline, "decode_stream", lambda self, *a, **k: _nan_after(decode_stream(self, *a, **k), 1))
    out = tmp_path / "a.wav"
    out.write_bytes(b"previous take")
    if not stream:  # the whole-sequence decoder
        from edgegen.components.oobleck import OobleckDecoder

        monkeypatch.setattr(OobleckDecoder, "forward", lambda self, x: torch.full((1, 2, x.shape[-1] * 2048), float("nan")))
    args = ["generate", "-m", "random:tiny-long", "-p", "x", "-s", "1.5", *(["--stream"] if stream else []),
            "-o", out]
    assert_one_error(invoke_cli(*args), "the decoded audio holds", after=("sampling", "streaming into", "chunk:"))
    assert out.read_bytes() == b"previous take" and [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_streaming_wav_removes_its_partial_file_on_error(tmp_path):
    from edgegen.audio_io import StreamingWav

    out = tmp_path / "a.wav"
    out.write_bytes(b"previous take")
    with pytest.raises(ValueError, match="stop"):
        with StreamingWav(out, 44100, channels=2) as wav:
            wav.write(np.zeros((2, 100), np.float32))
            assert wav.partial.exists() and out.read_bytes() == b"previous take"
            raise ValueError("stop")
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"] and out.read_bytes() == b"previous take"
    with StreamingWav(out, 44100, channels=2) as wav:
        wav.write(np.zeros((2, 100), np.float32))
    import soundfile as sf

    assert sf.info(str(out)).frames == 100 and [p.name for p in tmp_path.iterdir()] == ["a.wav"]


@pytest.mark.executorch
def test_run_non_finite_audio_is_an_error(bundle_factory, tmp_path, monkeypatch):
    from edgegen.bundle_pipeline import BundlePipeline

    bundle = bundle_factory("executorch", "fp32")  # exported (and verified) before decoding is broken
    decode_chunks = BundlePipeline.decode_chunks
    monkeypatch.setattr(BundlePipeline, "decode_chunks", lambda self, *a, **k: _nan_after(decode_chunks(self, *a, **k), 0))
    out = tmp_path / "a.wav"
    assert_one_error(invoke_cli("run", "-b", bundle, "-p", "x", "-s", "0.5", "-o", out),
                     "the decoded audio holds", after=("sampling", "["))  # "[": the runtime's own log lines
    assert list(tmp_path.iterdir()) == []


# --- 17.7: durations under one sample; over-long prompts ----------------------------------------------------------------

@pytest.mark.parametrize("seconds", ["1e-9", "0", "-1", "nan", "inf", "5"])
def test_seconds_out_of_range(tmp_path, seconds):
    assert_one_error(invoke_cli(*_gen(tmp_path / "a.wav")[:-2], "-s", seconds, "-o", tmp_path / "a.wav"),
                     f"--seconds {float(seconds):g}")
    assert list(tmp_path.iterdir()) == []


def test_over_long_prompt_is_refused(tmp_path):
    line = assert_one_error(invoke_cli("generate", "-m", "random:tiny", "-p", LONG_PROMPT, "-s", "0.3", "-o",
                                       tmp_path / "a.wav"), "the prompt is 161 tokens and this model takes at most 64")
    assert "--truncate-prompt" in line and list(tmp_path.iterdir()) == []


def test_truncate_prompt_says_so(tmp_path):
    """Opt-in truncation: exit 0, a warning on stderr and a note in the `wrote` line; the audio is that of the
    truncated prompt."""
    import edgegen
    import soundfile as sf

    out = tmp_path / "a.wav"
    res = run_cli("generate", "-m", "random:tiny", "-p", LONG_PROMPT, "-s", "0.3", "--truncate-prompt", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "edgegen: warning: prompt is 161 tokens; truncated to 64" in res.stderr
    assert "prompt truncated from 161 to 64 tokens" in res.stdout.splitlines()[0]
    ref = edgegen.load_pipeline("random:tiny").generate(GenerateRequest(LONG_PROMPT, seconds=0.3, truncate_prompt=True))
    np.testing.assert_allclose(sf.read(out, dtype="float32")[0].T, ref, atol=1e-6)


@pytest.mark.executorch
def test_run_over_long_prompt_is_refused(bundle_factory, tmp_path):
    assert_one_error(invoke_cli("run", "-b", bundle_factory("executorch", "fp32"), "-p", LONG_PROMPT, "-s", "0.3",
                                "-o", tmp_path / "a.wav"), "the prompt is 161 tokens and this model takes at most 64",
                     after=("[",))
    assert list(tmp_path.iterdir()) == []
    res = invoke_cli("run", "-b", bundle_factory("executorch", "fp32"), "-p", LONG_PROMPT, "-s", "0.3",
                     "--truncate-prompt", "-o", tmp_path / "a.wav")
    assert res.exit_code == 0 and "prompt truncated from 161 to 64 tokens" in res.stdout, res.output
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


# --- 17.8/17.9: model_config.json is validated against its schema when read ----------------------------------------------

D = ("model", "diffusion", "config")
SEC = ("model", "conditioning", "configs", 1, "config")


@pytest.mark.parametrize("path,value,needle", [
    (D + ("depth",), "two", "invalid model.diffusion.config.depth='two': expected an integer in 1..64"),
    (D + ("depth",), 2.5, "depth=2.5"),
    (D + ("depth",), 0, "depth=0"),
    (("sample_rate",), "44100", "invalid sample_rate='44100'"),
    (("sample_size",), -32768, "invalid sample_size=-32768"),
    (D + ("embed_dim",), 1e9, "embed_dim=1000000000.0: expected an integer in 16..4096"),
    (D + ("embed_dim",), 10**9, "embed_dim=1000000000:"),
    (SEC + ("max_val",), -1, "configs[seconds_total].config.max_val=-1"),
    (("model", "conditioning", "cond_dim"), None, "cond_dim=None"),
])
def test_model_config_schema(tmp_path, path, value, needle):
    raw = json.loads(json.dumps(PRESETS["tiny"][0]))
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_config.json").write_text(json.dumps(raw))  # no weights: the config is refused before them
    line = assert_one_error(invoke_cli("generate", "-m", model, "-p", "x", "-o", tmp_path / "a.wav"), needle)
    assert str(model / "model_config.json") in line


# --- bad input vs bugs ---------------------------------------------------------------------------------------------------

def test_usage_errors_are_one_line(tmp_path):
    assert_one_error(invoke_cli(*_gen(tmp_path / "a.wav", "--steps", "0")), "Invalid value for '--steps'")
    assert_one_error(invoke_cli("generate", "-m", "random:tiny", "-o", tmp_path / "a.wav"), "Missing option '--prompt'")
    assert_one_error(invoke_cli("generate", "--no-such-option"), "No such option")
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_exception_keeps_its_traceback(tmp_path, no_load):
    """A bug is not bad input: it must not be turned into a tidy `edgegen: error:` line."""
    res = invoke_cli(*_gen(tmp_path / "a.wav"))
    assert res.exit_code == 1 and isinstance(res.exception, RuntimeError) and "edgegen: error" not in res.stderr
