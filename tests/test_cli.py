"""The CLI end to end on random:tiny, through click's runner (same process) and as a real subprocess."""

import numpy as np
import soundfile as sf

from edgegen.request import GenerateRequest
from tests.helpers import assert_one_error, invoke_cli, run_cli


def test_generate_writes_wav(tmp_path):
    out = tmp_path / "a.wav"
    res = invoke_cli("generate", "-m", "random:tiny", "-p", "a dog barking", "-s", "0.5", "-o", out)
    assert res.exit_code == 0, res.output
    data, sr = sf.read(out, dtype="float32")
    info = sf.info(out)
    assert sr == 44100 and data.shape == (22050, 2) and info.subtype == "FLOAT"
    assert "dit" in res.output and "decoder" in res.output


def test_generate_pcm16_and_noise(tmp_path, tiny):
    noise = np.random.default_rng(0).standard_normal((8, 64, tiny.latent_length)).astype(np.float32)
    np.save(tmp_path / "n.npy", noise)
    out = tmp_path / "b.wav"
    res = invoke_cli("generate", "-m", "random:tiny", "-p", "x", "-s", "0.3", "--noise", tmp_path / "n.npy", "--pcm16",
                     "-o", out)
    assert res.exit_code == 0, res.output
    assert sf.info(out).subtype == "PCM_16"
    ref = tiny.generate(GenerateRequest("x", seconds=0.3, noise=noise))
    np.testing.assert_allclose(sf.read(out, dtype="float32")[0].T, np.clip(ref, -1, 1), atol=1 / 32767)


def test_bad_input_one_line_exit_2(tmp_path):
    out = tmp_path / "c.wav"
    for args, needle in [
        (["generate", "-m", "random:tiny", "-p", "x", "-s", "5", "-o", str(out)], "out of range"),
        (["generate", "-m", str(tmp_path / "missing"), "-p", "x", "-o", str(out)], "model folder not found"),
        (["generate", "-m", "random:huge", "-p", "x", "-o", str(out)], "unknown built-in model"),
        (["generate", "-m", "random:tiny", "-p", "x", "-s", "0.3", "--noise", str(tmp_path / "n.npy"), "-o", str(out)],
         "noise file not found"),
    ]:
        assert_one_error(run_cli(*args), needle)
        assert not out.exists()


def test_info_model():
    res = invoke_cli("info", "--model", "random:tiny")
    assert res.exit_code == 0, res.output
    assert "latent length   16 x 64" in res.output and "44100 Hz" in res.output and "dit" in res.output


def test_generate_replaces_an_existing_wav_and_leaves_nothing_else(tmp_path):
    """Refusing non-regular outputs and inputs must not refuse the ordinary case: a regular file is replaced, and
    no temporary or probe file is left beside it (streamed or not)."""
    out = tmp_path / "a.wav"
    out.write_bytes(b"an older take")
    for extra in ([], ["--stream"]):
        res = invoke_cli("generate", "-m", "random:tiny", "-p", "x", "-s", "0.2", *extra, "-o", out)
        assert res.exit_code == 0, res.output
        assert sf.info(str(out)).frames == 8820 and [p.name for p in tmp_path.iterdir()] == ["a.wav"]
