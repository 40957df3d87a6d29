"""Bad input to `parity` and `bench`, through the CLI: exit 2 with exactly one `edgegen: error:` line naming the
problem, no traceback, nothing written and (where the check is "before any work") nothing loaded. A bundle whose
output holds NaN is not bad input: it is a failed gate (exit 1) with a readable reason in a strict-JSON report.

One random:tiny ExecuTorch fp32 bundle (the session's `bundle_factory`) serves every case; the CLI runs in this
process (click's CliRunner) so a stage can be poisoned with monkeypatch instead of exporting a broken bundle.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import edgegen
import edgegen.common
import edgegen.bundle_pipeline
import edgegen.parity
import edgegen.pipeline
import edgegen.runtime
from edgegen.errors import EdgegenError
from edgegen.manifest import Manifest
from tests.helpers import assert_one_error, invoke_cli

pytestmark = pytest.mark.executorch


@pytest.fixture
def bundle(bundle_factory) -> Path:
    return bundle_factory("executorch", "fp32")


@pytest.fixture
def no_work(monkeypatch):
    """Loading a model or opening a bundle fails the test: the check under test must come before both."""
    def boom(*a, **k):
        raise AssertionError("work started before the bad input was refused")

    monkeypatch.setattr(edgegen.pipeline, "load_pipeline", boom)
    monkeypatch.setattr(edgegen.runtime, "load_artifacts", boom)
    monkeypatch.setattr(edgegen.bundle_pipeline.BundlePipeline, "open", boom)


# --- 17.4: the --json destination is checked before any work, written atomically ---------------------------------

@pytest.mark.parametrize("case", ["missing_folder", "is_a_folder", "inside_the_bundle", "not_a_regular_file"])
def test_parity_json_unwritable_is_refused_before_work(bundle, tmp_path, no_work, case):
    dest = {"missing_folder": tmp_path / "missing" / "dir" / "p.json", "is_a_folder": tmp_path,
            "inside_the_bundle": bundle / "p.json", "not_a_regular_file": Path("/dev/null")}[case]
    needle = {"missing_folder": "does not exist", "is_a_folder": "folder", "inside_the_bundle": "--bundle",
              "not_a_regular_file": "not a regular file"}[case]
    before = sorted(p.name for p in bundle.iterdir())
    line = assert_one_error(invoke_cli("parity", "-b", bundle, "-m", "random:tiny", "--json", dest), needle)
    assert str(dest) in line
    assert sorted(p.name for p in bundle.iterdir()) == before and not (tmp_path / "missing").exists()


def test_report_is_written_atomically(tmp_path, monkeypatch):
    """A failure while replacing leaves the previous report whole and no partial file."""
    dest = tmp_path / "p.json"
    dest.write_text('{"old": true}\n')

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(edgegen.common.os, "replace", full_disk)  # the one atomic_path every writer uses
    with pytest.raises(EdgegenError, match="No space left on device; nothing was written"):
        edgegen.parity.write_report(dest, edgegen.parity.ParityReport(
            bundle="b", backend="litert", recipe="fp32", target="host-litert", model="random:tiny", tokens_match=True,
            rows=()))
    assert dest.read_text() == '{"old": true}\n' and [p.name for p in tmp_path.iterdir()] == ["p.json"]


# --- 17.9: a bundle of another model is refused before any work, naming both -------------------------------------

def _with_source(bundle: Path, out: Path, **source) -> Path:
    shutil.copytree(bundle, out)
    m = json.loads((out / "manifest.json").read_text())
    m["source"].update(source)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def test_parity_of_another_models_bundle_is_refused(bundle, tmp_path, monkeypatch):
    other = _with_source(bundle, tmp_path / "other", model="/models/other-sao", config_sha256="ab" * 32)
    ran = []
    monkeypatch.setattr(edgegen.runtime, "load_artifacts", lambda *a, **k: ran.append(1))
    res = invoke_cli("parity", "-b", other, "-m", "random:tiny", "--json", tmp_path / "p.json")
    assert assert_one_error(res, "/models/other-sao", "random:tiny", "config sha256 abababababab") == res.stderr.strip()
    assert not ran and not (tmp_path / "p.json").exists()


def test_a_different_checkpoint_file_of_the_same_config_is_a_warning(tiny, bundle):
    """Same config, other checkpoint bytes (e.g. the same weights as .ckpt): compared, with one warning."""
    m = json.loads((bundle / "manifest.json").read_text())
    m["source"]["checkpoint_sha256"] = "cd" * 32
    with pytest.warns(UserWarning, match="checkpoint .*cdcdcdcdcdcd.* comparing anyway"):
        edgegen.parity.check_source(Manifest.from_json(m), tiny)
    m["artifacts"]["dit"]["inputs"][0]["shape"][-1] += 1  # a latent length the model does not make
    m["source"].pop("config_sha256")
    with pytest.raises(EdgegenError, match=r"latents 64x\d+ at 44100 Hz vs 64x\d+ at 44100 Hz"):
        edgegen.parity.check_source(Manifest.from_json(m), tiny)


# --- 17.6: non-finite outputs -----------------------------------------------------------------------------------

def _strict_json(path: Path) -> dict:
    def no_constants(name):
        raise AssertionError(f"{name} in the JSON report")

    return json.loads(path.read_text(), parse_constant=no_constants)


def test_nan_in_the_bundles_dit_is_a_failed_gate(bundle, tmp_path, monkeypatch):
    real = edgegen.bundle_pipeline.BundlePipeline.velocity
    calls = []

    def nan_from_step_3(self, x, t, cross, glob):
        calls.append(1)
        v = real(self, x, t, cross, glob)
        return np.full_like(v, float("nan")) if len(calls) == 4 else v

    monkeypatch.setattr(edgegen.bundle_pipeline.BundlePipeline, "velocity", nan_from_step_3)
    res = invoke_cli("parity", "-b", bundle, "-m", "random:tiny", "--json", tmp_path / "p.json")
    assert res.exit_code == 1, (res.output, res.exception)
    assert "Traceback" not in res.output and "edgegen: error" not in res.stderr
    assert "overall: FAIL" in res.stdout and "DiT output at step 3 holds" in res.stdout
    report = _strict_json(tmp_path / "p.json")
    dit = report["components"]["dit"]
    assert not dit["passed"] and "non-finite" in dit["reason"] and dit["metrics"]["rel_err"] == "nan"
    assert [c["rel_err"] == "nan" for c in dit["cases"]] == [False] * 3 + [True] * 5
    assert report["components"]["text_encoder"]["passed"]
    assert not report["components"]["decoder"]["passed"] and not report["end_to_end"]["passed"]


def test_nan_in_the_bundles_decoder_fails_decoder_and_end_to_end(bundle, tmp_path, monkeypatch):
    real = edgegen.bundle_pipeline.BundlePipeline.decode_chunks

    def one_nan(self, latents, samples=None):
        for chunk in real(self, latents, samples):
            chunk = chunk.copy()
            chunk[0, 1, 7] = float("nan")
            yield chunk

    monkeypatch.setattr(edgegen.bundle_pipeline.BundlePipeline, "decode_chunks", one_nan)
    res = invoke_cli("parity", "-b", bundle, "-m", "random:tiny", "--json", tmp_path / "p.json")
    assert res.exit_code == 1, (res.output, res.exception)
    assert "Traceback" not in res.output and "edgegen: error" not in res.stderr
    report = _strict_json(tmp_path / "p.json")
    assert report["components"]["dit"]["passed"] and report["components"]["text_encoder"]["passed"]
    for entry in (report["components"]["decoder"], report["end_to_end"]):
        assert not entry["passed"] and "holds 1 non-finite value(s)" in entry["reason"]
    assert report["end_to_end"]["mrstft"] is None
    assert "end_to_end    the bundle's end-to-end audio holds 1 non-finite" in res.stdout


def test_nan_in_the_reference_is_bad_input(bundle, tmp_path, monkeypatch):
    real = edgegen.pipeline.load_pipeline

    def nan_decoder(model, **kw):
        pipe = real(model, **kw)
        with torch.no_grad():
            next(pipe.decoder.parameters()).view(-1)[0] = float("nan")
        return pipe

    monkeypatch.setattr(edgegen.pipeline, "load_pipeline", nan_decoder)
    res = invoke_cli("parity", "-b", bundle, "-m", "random:tiny", "--json", tmp_path / "p.json")
    assert_one_error(res, "reference random:tiny", "non-finite", "decoder", after=("[",))  # the runtime's log lines
    assert not (tmp_path / "p.json").exists()


# --- 17.7: bench refuses seconds out of range, like run; its default is the model's maximum ----------------------

@pytest.mark.parametrize("seconds", ["10", "0", "nan", "-1"])
@pytest.mark.parametrize("what", ["bundle", "model"])
def test_bench_refuses_seconds_out_of_range(bundle, what, seconds):
    target = ["--bundle", bundle] if what == "bundle" else ["--model", "random:tiny"]
    res = invoke_cli("bench", *target, "-s", seconds, "--iters", "1", "--warmup", "0")
    assert_one_error(res, f"--seconds {float(seconds):g} is out of range", "0.74 seconds", after=("[",))
    assert res.stdout == ""


def test_bench_default_seconds_is_the_maximum(bundle):
    res = invoke_cli("bench", "--bundle", bundle, "--iters", "1", "--warmup", "0")
    assert res.exit_code == 0, (res.output, res.exception)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert result["audio_seconds"] == pytest.approx(manifest["max_seconds"], abs=1 / 44100)


def test_a_reason_fails_the_gate_whatever_the_metrics():
    """The device's DiT is gated on step 0 only: a NaN at a later step must still fail it (through its reason)."""
    from edgegen.metrics import Metrics
    from edgegen.parity import Gate, Row

    good = Metrics(sqnr_db=120.0, rel_err=1e-6, max_abs=1e-6, cosine=1.0)
    gate = Gate("rel_err", 1e-4)
    assert Row.judged("dit", good, gate).passed
    row = Row.judged("dit", good, gate, reason="the bundle's latents after the DiT at step 3 holds 1 non-finite value(s)")
    assert row.passed is False and "step 3" in row.to_json()["reason"]
    # not gated: a non-finite output still fails the row
    assert Row.judged("end_to_end", good, None, reason="NaN").passed is False
