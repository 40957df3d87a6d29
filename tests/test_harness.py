"""run / parity / bench on random:tiny bundles of both backends, through the CLI and the library."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

import edgegen
from edgegen.bundle_pipeline import BundlePipeline
from edgegen.export import export_bundle
from edgegen.metrics import rel_err
from edgegen.parity import check_parity, format_report
from edgegen.recipes import load_recipe, load_target
from edgegen.request import GenerateRequest
from tests.helpers import perturb_, run_cli

BACKENDS = ["executorch", "litert"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_matches_reference_with_injected_noise(tiny, bundle_factory, backend, tmp_path):
    noise = np.random.default_rng(1).standard_normal((8, 64, tiny.latent_length)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    out = tmp_path / "a.wav"
    res = run_cli("run", "-b", str(bundle_factory(backend, "fp32")), "-p", "a dog barking", "-s", "0.6",
                  "--noise", str(tmp_path / "noise.npy"), "-o", str(out))
    assert res.returncode == 0, res.stderr
    wav, sr = sf.read(out, dtype="float32")
    ref = tiny.generate(GenerateRequest("a dog barking", seconds=0.6, noise=noise))
    assert sr == 44100 and wav.shape == (ref.shape[1], 2)
    assert rel_err(ref, wav.T) <= 1e-4
    # the same seed gives the same noise as the reference pipeline
    bp = BundlePipeline.open(bundle_factory(backend, "fp32"))
    assert rel_err(tiny.generate(GenerateRequest("x", seconds=0.3, seed=5)), bp.generate(GenerateRequest("x",
                                                 seconds=0.3, seed=5))) <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recipe", ["fp32", "int8"])
def test_parity_passes(tiny, bundle_factory, backend, recipe):
    result = check_parity(BundlePipeline.open(bundle_factory(backend, recipe)), tiny)
    report = result.to_json()
    assert result.passed and report["passed"], json.dumps(report, indent=1)[:3000]
    assert len(report["components"]["dit"]["cases"]) == 8
    assert report["end_to_end"]["gated"] == (recipe == "fp32")
    # a quantized bundle's end to end is reported, not gated: passed is null, not true
    assert report["end_to_end"]["passed"] is (True if recipe == "fp32" else None)
    assert result.row("end_to_end").passed is report["end_to_end"]["passed"]
    e2e_line = next(line for line in format_report(result).splitlines() if line.startswith("end_to_end"))
    assert e2e_line.endswith("PASS" if recipe == "fp32" else "report only       not gated")


@pytest.mark.litert
def test_weight_only_int8_bundle(tiny, bundle_factory):
    """`size` on LiteRT: every layer int8w (int8 weights in the file, an explicit DEQUANTIZE, fp32 compute), the DiT
    and decoder about a quarter of their fp32 size (the tiny T5 is mostly its embedding table, a gather, kept
    float), parity above the recipe's floors and above dynamic int8's figures."""
    pytest.importorskip("ai_edge_litert")
    size, fp32 = bundle_factory("litert", "size"), bundle_factory("litert", "fp32")
    bp = BundlePipeline.open(size)
    for comp in ("text_encoder", "dit", "decoder"):
        entry = bp.bundle.manifest.artifacts[comp]
        assert set(entry.schemes) == {"int8w"}, (comp, entry.schemes)
        fp32_size = BundlePipeline.open(fp32).bundle.manifest.artifacts[comp].size
        assert entry.size < (0.9 if comp == "text_encoder" else 0.4) * fp32_size, comp
    report = check_parity(bp, tiny)
    assert report.passed, json.dumps(report.to_json(), indent=1)[:3000]
    dynamic = check_parity(BundlePipeline.open(bundle_factory("litert", "int8")), tiny)
    for comp in ("text_encoder", "dit"):  # same weight rounding, no activation rounding: higher SQNR
        assert report.row(comp).metrics.sqnr_db > dynamic.row(comp).metrics.sqnr_db


def test_parity_cli_json_schema_and_exit_codes(bundle_factory, tmp_path):
    good = bundle_factory("litert", "fp32")
    res = run_cli("parity", "-b", str(good), "-m", "random:tiny", "--json", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "overall: PASS" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) == {"schema", "bundle", "backend", "recipe", "target", "model", "tokens_match", "passed",
                           "components", "end_to_end"}
    assert report["schema"] == "edgegen.parity/2"
    for comp in ("text_encoder", "dit", "decoder"):
        c = report["components"][comp]
        assert set(c) >= {"gate", "passed", "metrics", "cases"}
        assert set(c["metrics"]) == {"sqnr_db", "rel_err", "max_abs", "cosine"}
    assert "mrstft" in report["components"]["decoder"] and "mrstft" in report["end_to_end"]
    # a flipped byte: refused as bad input
    bad = tmp_path / "flipped"
    shutil.copytree(good, bad)
    data = bytearray((bad / "decoder.tflite").read_bytes())
    data[100] ^= 0x01
    (bad / "decoder.tflite").write_bytes(bytes(data))
    res = run_cli("parity", "-b", str(bad), "-m", "random:tiny")
    assert res.returncode == 2 and "sha256" in res.stderr


def test_perturbed_weights_fail_the_gate(tmp_path):
    perturbed = edgegen.load_pipeline("random:tiny")
    perturb_(perturbed.dit, 0.05)
    out = tmp_path / "perturbed"
    export_bundle(perturbed, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=out)
    res = run_cli("parity", "-b", str(out), "-m", "random:tiny")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "dit" in res.stdout and "FAIL" in res.stdout


@pytest.mark.parametrize("kind", ["bundle", "model"])
def test_bench_last_line_is_json(bundle_factory, kind):
    target = ["--bundle", str(bundle_factory("executorch", "int8"))] if kind == "bundle" else ["--model", "random:tiny"]
    res = run_cli("bench", *target, "--iters", "2", "--warmup", "1")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"e2e_s", "peak_rss_mb", "time_to_first_audio_s", "rtf", "stages"} <= set(result)
    assert {"load", "text_encoder", "dit", "decoder"} <= set(result["stages"])
    assert result["e2e_s"] > 0 and result["peak_rss_mb"] > 0
    assert isinstance(result["int8_features"], list) and "int8 features:" in res.stdout


def test_int8_features_from_cpuinfo():
    from edgegen.bench import describe_int8, int8_features
    from tests.helpers import ARM64_CPUINFO

    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\nprocessor\t: 1\nflags\t\t: avx2\n"
    assert int8_features(x86) == ["avx512_vnni", "avx512f", "avx2"]
    assert int8_features(ARM64_CPUINFO.read_text()) == ["asimddp"]
    assert int8_features("") == []
    assert describe_int8(["avx2"]) == "int8 features: avx2 (int8 dot product: NO)"
    assert describe_int8(["asimddp", "i8mm"]).endswith("(int8 dot product: asimddp, i8mm)")


def test_run_bad_input(bundle_factory, tmp_path):
    b = str(bundle_factory("litert", "fp32"))
    for args, needle in [((), "out of range"), (("--noise", str(tmp_path / "nope.npy")), "noise file not found")]:
        res = run_cli("run", "-b", b, "-p", "x", "-s", "5" if not args else "0.5", *args, "-o", str(tmp_path / "o.wav"))
        assert res.returncode == 2 and needle in res.stderr and not (tmp_path / "o.wav").exists()
    res = run_cli("run", "-b", str(tmp_path / "missing"), "-p", "x", "-o", str(tmp_path / "o.wav"))
    assert res.returncode == 2 and "bundle not found" in res.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_low_memory_loads_each_stage_and_matches(bundle_factory, backend, monkeypatch):
    """--low-memory: nothing resident between stages, one load per stage per generation, same audio."""
    path = bundle_factory(backend, "int8")
    resident = BundlePipeline.open(path).generate(GenerateRequest("rain on a tin roof", seconds=0.5, seed=3))
    bp = BundlePipeline.open(path, low_memory=True)
    assert bp.artifacts == {}
    loaded = []
    real = edgegen.bundle_pipeline.load_artifacts

    def spy(bundle, **kw):
        loaded.append((kw["components"], sorted(bp.artifacts)))
        return real(bundle, **kw)

    monkeypatch.setattr(edgegen.bundle_pipeline, "load_artifacts", spy)
    for _ in range(2):
        wav = bp.generate(GenerateRequest("rain on a tin roof", seconds=0.5, seed=3))
        np.testing.assert_array_equal(wav, resident)
    monkeypatch.undo()
    stage_loads = [(("text_encoder",), []), (("dit",), []), (("decoder",), [])]
    assert loaded == stage_loads * 2 and bp.artifacts == {}
    with pytest.raises(edgegen.EdgegenError, match="opened with low_memory"):
        bp.encode_text("x", 0.5)
    with bp.resident("text_encoder"):
        cross, _ = bp.encode_text("x", 0.5)
    assert cross.shape[0] == 1 and bp.artifacts == {}


def test_bench_low_memory_cli(bundle_factory):
    res = run_cli("bench", "--bundle", str(bundle_factory("litert", "int8")), "--iters", "1", "--warmup", "0",
                  "--low-memory")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["low_memory"] is True and "low memory" in res.stdout
    res = run_cli("bench", "--model", "random:tiny", "--low-memory")
    assert res.returncode == 2 and "--low-memory applies to a bundle" in res.stderr


def test_bench_result_from_iterations():
    """One builder for every runtime: medians of the timed runs, audio length at the runs' own sample rate, load
    timed once (host) or per run (phone), the worst peak RSS."""
    from edgegen.bench import Iteration, bench_result

    def it(e2e, load=None, rss=100.0):
        stages = {"text_encoder": e2e / 10, "dit": e2e / 2, "decoder": e2e / 4, **({"load": load} if load else {})}
        return Iteration(e2e_s=e2e, stages=stages, dit_steps=[e2e / 16] * 8, first_audio_s=e2e * 0.9, frames=24000,
                         sample_rate=48000, peak_rss_mb=rss)

    runs = [it(1.0, 0.3, 90.0), it(3.0, 0.1, 120.0), it(2.0, 0.2, 100.0)]
    r = bench_result(runs, warmup=1, kind="device", backend="executorch", recipe="int8", target="t", threads=4)
    assert r["schema"] == "edgegen.bench/1" and r["kind"] == "device" and r["threads"] == 4
    assert r["e2e_s"] == 2.0 and r["audio_seconds"] == 0.5 and r["rtf"] == 4.0
    assert r["load_s"] == r["stages"]["load"] == 0.2 and r["stages"]["dit"] == 1.0 and r["dit_step_s"] == 0.125
    assert r["time_to_first_audio_s"] == pytest.approx(1.8) and r["peak_rss_mb"] == 120.0
    assert r["iters"] == 3 and r["warmup"] == 1 and r["e2e_runs_s"] == [1.0, 3.0, 2.0]
    assert bench_result(runs, warmup=0, load_s=5.0)["stages"]["load"] == 5.0


def test_bench_model_threads_come_from_the_cli():
    """`bench --model --threads 1`: the command sets torch's threads; the library only reads them."""
    import torch

    from edgegen.bench import bench_model

    before = torch.get_num_threads()
    r = bench_model("random:tiny", iters=1, warmup=0, seconds=0.3)
    assert torch.get_num_threads() == before and r["threads"] == before and r["audio_seconds"] == pytest.approx(0.3)
    res = run_cli("bench", "--model", "random:tiny", "--threads", "1", "--iters", "1", "--warmup", "0")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["threads"] == 1
