"""The stateful streaming decoder (schema 3, the default stream): every latent frame decoded once.

random:tiny-long has 64 latent frames; `--decoder-window auto` picks window 23 (the stream needs
ceil((64 * 2048 + 9738) / 2048) = 69 frames: 3 calls of 23). The audio runs 9738 samples (4.75 frames) behind
(SAO-small's five-block decoder: 18981 samples, checked on its config below).
"""

import json
import math

import pytest
import soundfile as sf
import torch

from edgegen.bundle import open_bundle
from edgegen.bundle_pipeline import BundlePipeline
from edgegen.common import Timings, num_samples
from edgegen.components.oobleck import OOBLECK_CONFIGS, OobleckDecoder
from edgegen.components.stateful_decoder import StatefulDecoder
from edgegen.errors import EdgegenError
from edgegen.export import resolve_decoder_window
from edgegen.parity import check_parity
from edgegen.request import GenerateRequest
from edgegen.streaming import decode_stateful, default_stateful_window, stateful_calls, stateful_layout
from edgegen.metrics import rel_err, sqnr_db
from tests.helpers import TINY_DECODER_LAYERS, assert_edited_manifest_refused, run_cli

PROMPT = "a dog barking"


def _stream(sd: StatefulDecoder, latents: torch.Tensor, samples=None) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(decode_stateful(sd, latents, window=sd.window, hop=sd.hop, delay=sd.delay,
                                    state_size=sd.state_size, samples=samples))


# LiteRT's mixed form: convolutions on [B, C, L], these (both ConvTransposes, the input conv and one dilated conv)
# as GEMMs transposed in and out
HYBRID = {"layers.0", "layers.1.layers.1", "layers.2.layers.1", "layers.2.layers.3.layers.1"}


@pytest.mark.parametrize("layout", ["ncl", "nlc", "nc1l", "hybrid"])
@pytest.mark.parametrize("window", [1, 7, 23])
def test_stream_equals_the_whole_decode(tiny_long, layout, window):
    """Every layout and LiteRT's mixed conv / GEMM form, windows down to one frame, whole length and a clip that
    ends mid-window: >= 95 dB (fp32 rounding: measured 101-107 dB), exact lengths, every chunk non-empty."""
    torch.manual_seed(0)
    latents = torch.randn(1, 64, tiny_long.latent_length)
    with torch.no_grad():
        whole = tiny_long.decoder(latents)
    if layout == "hybrid":
        sd = StatefulDecoder(tiny_long.decoder, window=window, gemm_layers=HYBRID).eval()
        assert set(sd.linear_sources().values()) == HYBRID and len(sd.conv_sources()) == TINY_DECODER_LAYERS - len(HYBRID)
    else:
        sd = StatefulDecoder(tiny_long.decoder, window=window, layout=layout).eval()
    assert sd.delay == 9738 and sd.state_size == 5272
    for samples in (None, 30001):
        chunks = _stream(sd, latents, samples)
        got = torch.cat(chunks, -1)
        n = whole.shape[-1] if samples is None else samples
        assert got.shape == (1, 2, n) and all(c.shape[-1] > 0 for c in chunks)
        assert sqnr_db(whole[:, :, :n], got) >= 95


def test_stream_equals_the_whole_decode_at_full_width():
    """A SAO-small-schema decoder (128 channels) of 24 frames, random weights: the masks and states are the same
    code at any width, checked once at the real one."""
    torch.manual_seed(1)
    dec = OobleckDecoder(OOBLECK_CONFIGS["sao-small"]).eval()
    latents = torch.randn(1, 64, 24)
    with torch.no_grad():
        whole = dec(latents)
        sd = StatefulDecoder(dec, window=8).eval()
    assert (sd.delay, sd.state_size) == stateful_layout(OOBLECK_CONFIGS["sao-small"], window=8) == (18981, 244736)
    assert sqnr_db(whole, torch.cat(_stream(sd, latents), -1)) >= 95


def test_gemm_layers_must_name_convolutions(tiny_long):
    with pytest.raises(ValueError, match="gemm_layers names no convolution of the decoder: layers.9"):
        StatefulDecoder(tiny_long.decoder, window=4, gemm_layers={"layers.9", "layers.0"})


def test_frames_decoded_once():
    """Frames decoded = the stream's frames rounded up to a window: for SAO-small at 10 s, 225 frames (216 the
    audio needs + 9.27 the stream runs behind) where overlapped windows of 60 decode 360."""
    hop, delay = 2048, 18981
    need = math.ceil((441000 + delay) / hop)
    assert need == 225 <= math.ceil(441000 / hop) + 10
    assert stateful_calls(441000, window=15, hop=hop, delay=delay) * 15 == 225
    assert stateful_calls(441000, window=19, hop=hop, delay=delay) * 19 == 228
    assert default_stateful_window(OOBLECK_CONFIGS["sao-small"], length=256) == 19  # 266 frames = 14 x 19
    assert default_stateful_window(OOBLECK_CONFIGS["tiny"], length=64) == 23        # 69 frames: 3 x 23


def test_resolve_stateful_window(tiny, tiny_long):
    auto = resolve_decoder_window(tiny_long, "auto")
    assert auto == {"mode": "stateful", "window": 23, "hop": 2048, "delay": 9738, "state_size": 5272,
                    "receptive_field": 5}
    assert resolve_decoder_window(tiny_long, "1")["window"] == 1  # no overlap: any window streams
    assert resolve_decoder_window(tiny, "auto") is None              # 16 frames <= the default window
    with pytest.raises(EdgegenError, match="not shorter than the 64-frame"):
        resolve_decoder_window(tiny_long, "64")


def test_eager_generate_stream_matches_whole(tiny_long, tmp_path):
    t = Timings()
    chunks = []
    streamed = tiny_long.generate(GenerateRequest(PROMPT, seconds=2.9,
                                                  seed=1), stream=True, timings=t, on_chunk=chunks.append)
    whole = tiny_long.generate(GenerateRequest(PROMPT, seconds=2.9, seed=1))
    assert len(chunks) == 3 and streamed.shape == whole.shape == (2, num_samples(2.9, 44100))
    assert rel_err(whole, streamed) <= 1e-5
    res = run_cli("generate", "-m", "random:tiny-long", "-p", PROMPT, "-s", "1.5", "--stream", "-o",
                  str(tmp_path / "g.wav"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("chunk:") == 2 and sf.info(str(tmp_path / "g.wav")).frames == num_samples(1.5, 44100)


@pytest.mark.litert
def test_manifest_and_info(stateful):
    m = open_bundle(stateful("litert")).manifest
    assert m.schema_version == 3
    assert m.decoder_stream.to_json() == {"mode": "stateful", "window": 23, "hop": 2048, "delay": 9738,
                                          "state_size": 5272, "receptive_field": 5}
    dec = m.artifacts["decoder"]
    assert [(i.name, i.shape, i.index) for i in dec.inputs] == [
        ("latents", (1, 64, 23), 0), ("position", (2,), 1), ("state", (1, 5272), 2)]
    assert [(o.name, o.shape) for o in dec.outputs] == [("audio", (1, 2, 23 * 2048)), ("next_state", (1, 5272))]
    res = run_cli("info", str(stateful("litert")))
    assert res.returncode == 0 and "stateful: windows of 23 latent frames back to back" in res.stdout


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["decoder_stream"].pop("state_size"), "needs mode \"stateful\", delay and state_size"),
    (lambda m: m["decoder_stream"].update(state_size=99), "needs input state of shape \\[1, 99\\]"),
    (lambda m: m["decoder_stream"].update(window=24), "needs input latents of shape"),
    (lambda m: m["decoder_stream"].update(mode="tiled"), 'decoder_stream.mode is "tiled"; expected stateful'),
    (lambda m: m.update(schema_version=2), "a schema-2 decoder_stream has window, overlap and hop"),
    (lambda m: m["artifacts"]["decoder"]["outputs"].pop(), "needs outputs audio and next_state"),
])
@pytest.mark.litert
def test_bad_stateful_manifest_is_refused(stateful, tmp_path, edit, match):
    assert_edited_manifest_refused(stateful("litert"), tmp_path, edit, match)


@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_parity_bench_and_short_clip(tiny_long, stateful, backend):
    """In each runtime: the stitched stream vs the reference's whole decode >= 60 dB (fp32: ~100); a 1.6 s clip
    makes 2 calls (ceil((70560 + 9738) / 2048) = 40 frames), matching the reference; bench reports the frames."""
    from edgegen.bench import bench_bundle

    bp = BundlePipeline.open(stateful(backend))
    report = check_parity(bp, tiny_long).to_json()
    assert report["passed"], json.dumps(report, indent=1)[:3000]
    dec = report["components"]["decoder"]
    assert dec["streamed"]["mode"] == "stateful" and dec["metrics"]["sqnr_db"] >= 60

    calls = []
    art = bp.artifacts["decoder"]
    bp.artifacts["decoder"] = lambda **kw: calls.append(kw["position"].tolist()) or art(**kw)
    t = Timings()
    wav = bp.generate(GenerateRequest(PROMPT, seconds=1.6, seed=2), timings=t)
    assert calls == [[0, 64], [23, 64]] and wav.shape == (2, num_samples(1.6, 44100))
    assert rel_err(tiny_long.generate(GenerateRequest(PROMPT, seconds=1.6, seed=2)), wav) <= 1e-4
    assert 0 < t.stages["first_audio"] < t.stages["text_encoder"] + t.stages["dit"] + t.stages["decoder"]
    assert bp.decoded_latent_frames(num_samples(1.6, 44100)) == 46 and bp.decoded_latent_frames(64 * 2048) == 69

    r = bench_bundle(stateful(backend), iters=1, warmup=0, seconds=1.6)
    assert r["decoded_latent_frames"] == 46


@pytest.mark.executorch
def test_run_stream_writes_the_whole_decode(tiny_long, stateful, tmp_path):
    """`run --stream` writes, chunk by chunk, what the reference makes with ONE whole-sequence decode."""
    b = str(stateful("executorch"))
    res = run_cli("run", "-b", b, "-p", PROMPT, "-s", "2.5", "--seed", "4", "--stream", "-o", str(tmp_path / "b.wav"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("chunk:") == 3 and "first_audio" in res.stdout  # ceil(ceil(119988 / 2048) / 23) = 3
    streamed_wav, sr = sf.read(tmp_path / "b.wav", dtype="float32")
    reference = tiny_long.generate(GenerateRequest(PROMPT, seconds=2.5, seed=4))
    assert sr == 44100 and streamed_wav.shape == (num_samples(2.5, 44100), 2) == reference.T.shape
    assert rel_err(reference.T, streamed_wav) <= 1e-4
