"""Overlapped-window streamed bundles (schema 2, `--decoder-stream overlap`): export, manifest rules, `run --stream`,
parity. The default stateful stream (schema 3) is tests/test_stateful_stream.py.

random:tiny-long has 64 latent frames, long enough to stream (receptive field 5): `--decoder-window auto`
exports the decoder for [1, 64, 20] and the manifest says window 20, overlap 5. Schema 2 stays readable and
writable for tools that read only schema 1-2; its tests run on LiteRT (the cheaper export).
"""

import json

import numpy as np
import pytest
import soundfile as sf

from edgegen.bundle import open_bundle
from edgegen.bundle_pipeline import BundlePipeline
from edgegen.errors import EdgegenError
from edgegen.export import resolve_decoder_window
from edgegen.parity import check_parity
from edgegen.common import num_samples
from edgegen.metrics import rel_err
from edgegen.request import GenerateRequest
from tests.helpers import assert_edited_manifest_refused, assert_one_error, run_cli

PROMPT = "a dog barking"


def test_resolve_decoder_window(tiny, tiny_long):
    overlap = lambda p, w: resolve_decoder_window(p, w, "overlap")  # noqa: E731
    assert overlap(tiny_long, "auto") == {"window": 20, "overlap": 5, "hop": 2048, "receptive_field": 5}
    assert overlap(tiny_long, "24")["window"] == 24
    assert overlap(tiny, "auto") is None  # 16 frames: nothing to stream
    assert overlap(tiny_long, "whole") is None and overlap(tiny_long, None) is None
    for bad, match in (("10", "too small.*>= 11"), ("64", "not shorter"), ("big", "auto, whole or a number")):
        with pytest.raises(EdgegenError, match=match):
            overlap(tiny_long, bad)
    with pytest.raises(EdgegenError, match="stream mode must be one of stateful, overlap"):
        resolve_decoder_window(tiny_long, "auto", "tiled")


@pytest.mark.litert
def test_streamed_manifest_and_info(streamed):
    m = open_bundle(streamed("litert")).manifest
    assert m.schema_version == 2
    assert m.decoder_stream.to_json() == {"window": 20, "overlap": 5, "hop": 2048, "receptive_field": 5}
    assert m.artifacts["decoder"].inputs[0].shape == (1, 64, 20)
    assert m.artifacts["decoder"].outputs[0].shape == (1, 2, 20 * 2048)
    assert m.artifacts["dit"].inputs[0].shape == (1, 64, 64)
    res = run_cli("info", str(streamed("litert")))
    assert res.returncode == 0 and "streamed: windows of 20 latent frames, overlap 5" in res.stdout


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(schema_version=4), "schema_version 4 is not supported"),
    (lambda m: m.update(schema_version=3), "a schema-3 decoder_stream needs mode"),
    (lambda m: m.pop("decoder_stream"), "decoder_stream must be present exactly when"),
    (lambda m: m["decoder_stream"].update(window=48), "takes 20 latent frames but decoder_stream.window is 48"),
    (lambda m: m["decoder_stream"].update(overlap=20), "must exceed 2 x overlap"),
])
@pytest.mark.litert
def test_bad_stream_manifest_is_refused(streamed, tmp_path, edit, match):
    assert_edited_manifest_refused(streamed("litert"), tmp_path, edit, match)


@pytest.mark.litert
def test_streamed_parity_and_whole_reference(tiny_long, streamed, backend="litert"):
    """Windows stitched in the bundle's runtime vs the reference's whole-sequence decode: >= 60 dB (fp32)."""
    bp = BundlePipeline.open(streamed(backend))
    report = check_parity(bp, tiny_long).to_json()
    assert report["passed"], json.dumps(report, indent=1)[:3000]
    dec = report["components"]["decoder"]
    assert dec["streamed"]["window"] == 20 and dec["metrics"]["sqnr_db"] >= 60
    # a short clip decodes only the windows it needs (3 of 6: kept spans 0-15, 15-25, 25-35) and still matches the
    # reference
    from edgegen.common import Timings

    calls = []
    art = bp.artifacts["decoder"]
    bp.artifacts["decoder"] = lambda **kw: calls.append(1) or art(**kw)
    t = Timings()
    wav = bp.generate(GenerateRequest(PROMPT, seconds=1.6, seed=2), timings=t)  # 35 frames + overlap 5: 40 of 64
    assert len(calls) == 3 and wav.shape == (2, num_samples(1.6, 44100))
    assert rel_err(tiny_long.generate(GenerateRequest(PROMPT, seconds=1.6, seed=2)), wav) <= 1e-4
    assert 0 < t.stages["first_audio"] < t.stages["text_encoder"] + t.stages["dit"] + t.stages["decoder"]


@pytest.mark.litert
def test_run_stream_writes_the_whole_decode(tiny_long, streamed, tmp_path):
    """`run --stream` writes, chunk by chunk, what the reference makes with ONE whole-sequence decode; `run`
    without --stream writes the same file at once."""
    b = str(streamed("litert"))
    res = run_cli("run", "-b", b, "-p", PROMPT, "-s", "2.5", "--seed", "4", "--stream", "-o", str(tmp_path / "b.wav"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("chunk:") == 5 and "first_audio" in res.stdout  # 54 frames: kept spans up to 55
    streamed_wav, sr = sf.read(tmp_path / "b.wav", dtype="float32")
    reference = tiny_long.generate(GenerateRequest(PROMPT, seconds=2.5,
                                                   seed=4))  # decoder(latents) in one call, no windows
    assert sr == 44100 and streamed_wav.shape == (num_samples(2.5, 44100), 2) == reference.T.shape
    assert rel_err(reference.T, streamed_wav) <= 1e-4
    whole = run_cli("run", "-b", b, "-p", PROMPT, "-s", "2.5", "--seed", "4", "-o", str(tmp_path / "a.wav"))
    assert whole.returncode == 0, whole.stderr
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav", dtype="float32")[0], streamed_wav)


@pytest.mark.executorch
def test_run_stream_needs_a_streamed_bundle(bundle_factory, tmp_path):
    res = run_cli("run", "-b", str(bundle_factory("executorch", "fp32")), "-p", PROMPT, "-s", "0.5", "--stream",
                  "-o", str(tmp_path / "x.wav"))
    # random:tiny's 16 frames are too short for any window: say so instead of suggesting a re-export
    assert res.returncode == 2 and not (tmp_path / "x.wav").exists()
    assert "too short to stream" in res.stderr and "--decoder-window" not in res.stderr


@pytest.mark.litert
@pytest.mark.parametrize("stream", [True, False])
def test_run_refuses_a_missing_output_folder_before_generating(streamed, tmp_path, stream):
    out = tmp_path / "missing" / "x.wav"
    res = run_cli("run", "-b", str(streamed("litert")), "-p", PROMPT, "-s", "1", *(["--stream"] if stream else []),
                  "-o", str(out))
    assert assert_one_error(res) == f"edgegen: error: cannot write {out}: folder {out.parent} does not exist"
    assert "sampling" not in res.stderr
    assert not out.parent.exists()
