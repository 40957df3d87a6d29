"""The library behind the CLI, called without click: GenerateRequest and its plan, generate_wav, the option checks of
edgegen.reports and edgegen.export.run, and the README's Python snippet."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgegen.common import hf_hub_cache
from edgegen.errors import EdgegenError
from edgegen.generate import WavRequest, generate_wav, run_wav
from edgegen.request import GenerateRequest
from edgegen.sampler import schedule


@pytest.mark.parametrize("fields, message", [
    (dict(cfg_scale=float("nan")), r"--cfg-scale nan: give a finite number"),
    (dict(steps=0), r"steps must be an integer >= 1, got 0"),
    (dict(steps=2.5), r"steps must be an integer >= 1"),
    (dict(init_noise_level=0.5), r"init_noise_level 0.5 needs init audio"),
    (dict(init_noise_level=0.0, init_audio=(44100, np.zeros((2, 10), np.float32))), r"--init-noise-level 0.0 is out"),
])
def test_request_refuses_what_needs_no_model(fields, message):
    with pytest.raises(EdgegenError, match=message):
        GenerateRequest("x", **fields)


def test_request_is_frozen_and_keyword_only():
    req = GenerateRequest("x", seconds=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.seed = 3
    with pytest.raises(TypeError):
        GenerateRequest("x", 0.5)  # everything past the prompt is named
    assert dataclasses.replace(req, seed=3).seed == 3 and req.steps is None


def test_plan_checks_against_the_model(tiny):
    T = tiny.latent_length
    p = tiny.plan(GenerateRequest("a dog barking", seconds=0.5, steps=4))
    assert p.steps == 4 and p.noise.shape == (4, 64, T) and p.vae_noise is None and p.level == 1.0
    np.testing.assert_array_equal(p.sigmas, schedule(4))
    assert tiny.plan(GenerateRequest("x", seconds=0.5)).steps == tiny.steps == 8  # the model's default
    with pytest.raises(EdgegenError, match=r"--seconds 5 is out of range: this model makes"):
        tiny.plan(GenerateRequest("x", seconds=5.0))
    with pytest.raises(EdgegenError, match=r"noise has shape \[8, 64, 3\]; this model needs"):
        tiny.plan(GenerateRequest("x", seconds=0.5, noise=np.zeros((8, 64, 3), np.float32)))
    with pytest.raises(EdgegenError, match=r"sigmas must be 9 finite noise levels"):
        tiny.plan(GenerateRequest("x", seconds=0.5, sigmas=schedule(4)))
    with pytest.raises(EdgegenError, match=r"the prompt is \d+ tokens"):
        tiny.plan(GenerateRequest("warm piano " * 80, seconds=0.5))
    init = (tiny.sample_rate, np.zeros((2, 100), np.float32))
    a2a = tiny.plan(GenerateRequest("x", seconds=0.5, init_audio=init, init_noise_level=0.4))
    assert a2a.vae_noise.shape == (1, 64, T) and a2a.sigmas[0] == np.float32(0.4)


def test_generate_wav_without_click(tmp_path, tiny):
    log, bars = [], []

    class Bar:
        def __init__(self, steps):
            bars.append([steps, 0])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def update(self, n):
            bars[-1][1] += n

    init = tmp_path / "take.wav"
    sf.write(init, np.zeros((22050, 1), np.float32), 22050)
    out = tmp_path / "a.wav"
    job = WavRequest("rain", out, seconds=0.3, steps=3, stream=True, init_audio=init, init_noise_level=0.6)
    result = generate_wav(job, model="random:tiny", log=log.append, bar=Bar)
    assert result.output == out and sf.info(out).frames == round(0.3 * tiny.sample_rate) == round(result.seconds * 44100)
    assert re.fullmatch(r"wrote .*a\.wav \(0\.30 s, 2 ch, 44100 Hz\)", result.lines[0]), result.lines
    assert result.lines[1].startswith("load ") and "encoder" in result.lines[1] and "s/step)" in result.lines[1]
    assert bars == [[3, 3]]
    assert any(line.startswith("note: init audio resampled from 22050 Hz") for line in log), log
    assert any(line.startswith("  streaming into ") for line in log) and log[-1].startswith("  chunk: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "take.wav"]


def test_generate_wav_refuses_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr("edgegen.pipeline.load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "a.wav"
    with pytest.raises(EdgegenError, match="--cfg-scale inf"):
        generate_wav(WavRequest("x", out, cfg_scale=float("inf")), model="random:tiny")
    with pytest.raises(EdgegenError, match="--init-noise-level applies to audio-to-audio"):
        generate_wav(WavRequest("x", out, init_noise_level=0.3), model="random:tiny")
    with pytest.raises(EdgegenError, match="steps and cfg_scale apply to the reference"):
        run_wav(WavRequest("x", out, steps=4), bundle=tmp_path / "never-opened")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kw, message", [
    (dict(), "give exactly one of --bundle B or --model M"),
    (dict(bundle=Path("b"), model="random:tiny"), "give exactly one of --bundle B or --model M"),
    (dict(model="random:tiny", use_adb=True), "--adb times a bundle on the phone"),
    (dict(model="random:tiny", low_memory=True), "--low-memory applies to a bundle run on this machine"),
    (dict(model="random:tiny", no_weight_cache=True), "--weight-cache / --no-weight-cache apply"),
    (dict(model="random:tiny", init_audio=Path("a.wav")), "--init-audio times a bundle's audio-to-audio"),
])
def test_run_bench_refuses_option_combinations_before_loading(kw, message, monkeypatch):
    from edgegen.reports import run_bench

    monkeypatch.setattr("edgegen.pipeline.load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(EdgegenError, match=re.escape(message)):
        run_bench(**kw)


def test_describe_needs_exactly_one_subject(tiny):
    from edgegen.reports import describe

    for kw in (dict(), dict(bundle=Path("b"), model="random:tiny")):
        with pytest.raises(EdgegenError, match=r"give either a bundle \(--bundle B, or B alone\) or --model M"):
            describe(**kw)
    text = describe(model="random:tiny")
    assert text.startswith("source          random:tiny") and "  total" in text


@pytest.mark.parametrize("kw, message", [
    (dict(components="dit,vae"), "unknown component(s) vae"),
    (dict(recipe="fp32", sensitivity_floor=30.0), "--sensitivity-floor chooses the decoder's float layers"),
])
def test_export_model_refuses_before_loading(kw, message, tmp_path, monkeypatch):
    from edgegen.export.run import export_model

    monkeypatch.setattr("edgegen.pipeline.load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(EdgegenError, match=re.escape(message)):
        export_model(**{"model": "random:tiny", "target": "host-litert", "recipe": "int8", "output": tmp_path / "o",
                        **kw})
    assert list(tmp_path.iterdir()) == []


def test_hf_hub_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub1"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_hub_cache() == tmp_path / "hub1"
    monkeypatch.delenv("HF_HUB_CACHE")
    assert hf_hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.delenv("HF_HOME")
    assert hf_hub_cache() == Path.home() / ".cache" / "huggingface" / "hub"


def test_readme_python_snippet_runs():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    snippet = readme.split("### Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["wav"].shape == (2, round(0.5 * 44100)) and scope["wav"].dtype == np.float32
