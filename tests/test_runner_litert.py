"""The native runner on LiteRT bundles: libLiteRt.so's C API (android_demo/runner/src/litert_api.h), host and arm64.

The runner must give `edgegen run` (BundlePipeline over ai_edge_litert's Interpreter) the same samples on the same
bundle, fp32 and int8, with the same CLI, JSON line, --dump and errors as for ExecuTorch. The portable aarch64 folder
runs the same bundles under qemu-aarch64 with no host sysroot; LiteRT's CPU detection needs an arm64 /proc/cpuinfo
there (a private mount namespace, see tests/helpers.portable_command). Upstream parity of the LiteRT runner is in
tests/test_upstream_parity.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgegen.bench import int8_dot_product, int8_features
from edgegen.bundle import file_entry
from edgegen.bundle_pipeline import BundlePipeline
from edgegen.noise import gaussian_noise
from edgegen.request import GenerateRequest
from tests.helpers import (ARM64_CPUINFO, no_sysroot_env, portable_command, read_float_wav, runner_report,
                           with_arm64_cpuinfo)

pytestmark = [pytest.mark.litert, pytest.mark.executorch]

PROMPT, SECONDS = "a warm analog synth pad with slow attack", 0.5


def _run(cmd: list[str], bundle: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, "--bundle", str(bundle), "--prompt", PROMPT, "--seconds", str(SECONDS), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=600, cwd="/", env=env)


def _told_fp32(bundle: Path, dest: Path) -> Path:
    """A copy of `bundle` whose profile says no fp16 compute (the same .tflite files, run without FORCE_FP16)."""
    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["target"]["fp16_compute"] = False
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.mark.parametrize("recipe", ["fp32", "int8", "size"])
def test_runner_equals_edgegen_run_on_litert_bundle(host_runner, bundle_factory, tmp_path, recipe):
    """Bit-identical to BundlePipeline (what `edgegen run` runs), same seed and threads; stderr stays empty."""
    bundle = bundle_factory("litert", recipe)
    with BundlePipeline.open(bundle, threads=2) as bp:
        ref = bp.generate(GenerateRequest(PROMPT, seconds=SECONDS, seed=11))
    proc = _run([str(host_runner)], bundle, tmp_path / "out.wav", "--seed", "11", "--threads", "2", "--dump", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # LiteRT's own info lines are kept off stderr unless --verbose
    got = read_float_wav(tmp_path / "out.wav")
    assert got.shape == ref.shape and np.array_equal(got, ref)
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "noise.npy"), gaussian_noise(11, np.load(tmp_path / "d" / "noise.npy").shape))
    report = runner_report(proc)
    assert (report["backend"], report["runner"], report["threads"], report["recipe"]) == ("litert", "native", 2, recipe)
    assert len(report["dit_step_s"]) == 8 and set(report["stages"]) == {"load", "text_encoder", "dit", "decoder"}


def test_runner_threads_default_to_the_manifest_and_verbose_shows_litert_logs(host_runner, bundle_factory, tmp_path):
    bundle = bundle_factory("litert", "fp32")
    proc = _run([str(host_runner)], bundle, tmp_path / "a.wav", "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert runner_report(proc)["threads"] == json.loads((bundle / "manifest.json").read_text())["target"]["threads"]
    assert "XNNPACK" in proc.stderr or "LiteRT" in proc.stderr
    one = _run([str(host_runner)], bundle, tmp_path / "b.wav", "--threads", "1")
    assert one.returncode == 0, one.stderr
    assert runner_report(one)["threads"] == 1
    np.testing.assert_allclose(read_float_wav(tmp_path / "b.wav"), read_float_wav(tmp_path / "a.wav"), rtol=0, atol=1e-5)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


def _replace(b: Path, component: str, data: bytes) -> None:
    """New bytes for an artifact, its manifest size and sha256 updated (so only the content is wrong)."""
    (b / f"{component}.tflite").write_bytes(data)
    m = json.loads((b / "manifest.json").read_text())
    m["artifacts"][component].update(file_entry(b / f"{component}.tflite"))
    (b / "manifest.json").write_text(json.dumps(m))


def _swap_dit_for_text_encoder(b: Path) -> None:
    _replace(b, "dit", (b / "text_encoder.tflite").read_bytes())


def _garbage_flatbuffer(b: Path) -> None:
    head = (b / "decoder.tflite").read_bytes()[:8]  # keeps the TFL3 identifier, the rest is not a model
    _replace(b, "decoder", head + bytes(range(256)) * 64)


BAD = {  # case -> (bundle edit, environment changes, exit status, words of the one error line)
    "library_missing": (None, {"EDGEGEN_LITERT_LIB": "/nonexistent/libLiteRt.so"}, 1, "cannot load /nonexistent/libLiteRt.so"),
    "library_not_litert": (None, {"EDGEGEN_LITERT_LIB": "LIBEXECUTORCH"}, 1, "has no LiteRtCreateEnvironment (VERS_1.0)"),
    "artifact_signature_mismatch": (_swap_dit_for_text_encoder, {}, 2, "dit.tflite takes 3 inputs and returns 2 outputs"),
    "artifact_not_a_model": (_garbage_flatbuffer, {}, 1, "LiteRT could not load decoder"),
    "pte_in_a_litert_bundle": (lambda b: _replace(b, "dit", b"\x3c\0\0\0ET12" + bytes(100)), {}, 2,
                               "is an ExecuTorch .pte program but manifest.json says backend 'litert'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_litert_bundle_or_library_one_line(host_runner, bundle_factory, tmp_path, case):
    edit, env_changes, status, needle = BAD[case]
    bundle = _copy(bundle_factory("litert", "fp32"), tmp_path)
    if edit:
        edit(bundle)
    env = dict(no_sysroot_env())
    for k, v in env_changes.items():
        env[k] = str(host_runner.parent / "libexecutorch.so") if v == "LIBEXECUTORCH" else v
    out = tmp_path / "out"
    out.mkdir()
    proc = _run([str(host_runner)], bundle, out / "x.wav", "--dump", str(out / "dump"), env=env)
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: ") and needle in lines[0], proc.stderr
    assert list(out.iterdir()) == []


@pytest.mark.aarch64
@pytest.mark.parametrize("recipe", ["fp32", "int8"])
def test_portable_runner_on_litert_under_qemu(host_runner, portable_runner, bundle_factory, tmp_path, recipe):
    """LiteRT's aarch64 libLiteRt.so from the portable folder, under qemu with no host sysroot: the same audio as on
    x86 up to the two CPUs' kernel rounding (int8 also its dynamic-quantization rounding)."""
    bundle = bundle_factory("litert", recipe)
    arm = _run(portable_command(portable_runner, cpu="max,sme=off", arm64_cpuinfo=True), bundle, tmp_path / "arm.wav",
               "--seed", "4", "--threads", "2", env=no_sysroot_env())
    assert arm.returncode == 0, arm.stderr
    host = _run([str(host_runner)], bundle, tmp_path / "host.wav", "--seed", "4", "--threads", "2")
    assert host.returncode == 0, host.stderr
    a, h = read_float_wav(tmp_path / "arm.wav"), read_float_wav(tmp_path / "host.wav")
    rel = float(np.abs(a - h).max() / np.abs(h).max())
    assert rel <= (1e-4 if recipe == "fp32" else 2e-2), rel
    assert runner_report(arm)["backend"] == "litert"
    assert runner_report(arm)["int8_dot_product"] == int8_dot_product(int8_features(ARM64_CPUINFO.read_text()))


def test_streamed_litert_bundle_matches_edgegen_run(host_runner, streamed, tmp_path):
    """Schema 2 (decoder windows) on LiteRT: the runner decodes the windows `edgegen run` decodes, same samples."""
    bundle = streamed("litert")
    seconds = json.loads((bundle / "manifest.json").read_text())["max_seconds"]
    with BundlePipeline.open(bundle, threads=2) as bp:
        ref = bp.generate(GenerateRequest(PROMPT, seconds=seconds, seed=3))
    proc = subprocess.run([str(host_runner), "--bundle", str(bundle), "--prompt", PROMPT, "--seconds", repr(seconds),
                           "--seed", "3", "--threads", "2", "-o", str(tmp_path / "out.wav")],
                          capture_output=True, text=True, timeout=600, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_float_wav(tmp_path / "out.wav"), ref)
    report = runner_report(proc)
    assert report["decoder_calls"] > 1 and report["time_to_first_audio_s"] < report["e2e_s"]


def test_portable_runner_computes_the_mobile_decoder_in_fp16_under_qemu(portable_runner, bundle_factory, tmp_path):
    """android-arm64-litert asks for fp16 compute and the `mobile` decoder is fp16: the runner passes FORCE_FP16 to
    XNNPACK, which on an Arm CPU with fp16 arithmetic (qemu -cpu max) computes the decoder in half. Its audio then
    differs from the same bundle told fp32 (`fp16_compute = false`) by fp16-sized error, clearing the recipe's
    decoder floor, and the JSON names fp16. Were the flag dropped, the two runs would be bit-identical."""
    from edgegen.metrics import sqnr_db
    from edgegen.recipes import load_recipe

    bundle = bundle_factory("litert", "mobile", target="android-arm64-litert")
    told_fp32 = _told_fp32(bundle, tmp_path / "fp32-bundle")
    cmd = portable_command(portable_runner, cpu="max,sme=off", arm64_cpuinfo=True)
    half = _run(cmd, bundle, tmp_path / "half.wav", "--seed", "4", "--threads", "2", env=no_sysroot_env())
    full = _run(cmd, told_fp32, tmp_path / "full.wav", "--seed", "4", "--threads", "2", env=no_sysroot_env())
    assert half.returncode == 0 and full.returncode == 0, (half.stderr, full.stderr)
    assert runner_report(half)["precision"] == {"text_encoder": "fp32", "dit": "fp32", "decoder": "fp16"}
    assert runner_report(full)["precision"]["decoder"] == "fp32"
    a, b = read_float_wav(tmp_path / "half.wav"), read_float_wav(tmp_path / "full.wav")
    assert np.abs(a - b).max() > 0, "FORCE_FP16 did not reach XNNPACK: the decoder computed in fp32"
    assert sqnr_db(b, a) >= load_recipe("mobile").components["decoder"].sqnr_floor_db, sqnr_db(b, a)


@pytest.mark.aarch64
def test_portable_runner_computes_the_executorch_mobile_decoder_in_fp16_under_qemu(portable_runner, bundle_factory,
                                                                                  tmp_path):
    """ExecuTorch has no run-time flag: android-arm64-executorch's fp16 compute is applied at export, where the
    `mobile` decoder is cast to half, and XNNPACK runs it in fp16 on an Arm CPU (qemu -cpu max). The fp32 bundle with
    its decoder swapped for that export's (the same text encoder and DiT, so bit-identical latents) gives audio that
    differs from the fp32 bundle's by fp16-sized error, clearing the recipe's floor; the JSON names the precision.
    Were the cast dropped, the audio would be bit-identical too. (Two bundles already exported for other tests: a
    whole `mobile` bundle costs two more minutes of lowering.)"""
    from edgegen.metrics import sqnr_db
    from edgegen.recipes import load_recipe

    full = bundle_factory("executorch", "fp32")
    mobile = bundle_factory("executorch", "mobile", components=("decoder",), target="android-arm64-executorch")
    mobile_manifest = json.loads((mobile / "manifest.json").read_text())
    assert mobile_manifest["artifacts"]["decoder"]["compute_precision"] == "fp16"  # what the export set
    half = tmp_path / "half-bundle"
    shutil.copytree(full, half)
    manifest = json.loads((half / "manifest.json").read_text())
    assert {c: a["compute_precision"] for c, a in manifest["artifacts"].items()} == dict.fromkeys(manifest["artifacts"],
                                                                                               "fp32")
    shutil.copyfile(mobile / "decoder.pte", half / "decoder.pte")
    manifest["artifacts"]["decoder"] = mobile_manifest["artifacts"]["decoder"]
    manifest["target"] = mobile_manifest["target"]
    (half / "manifest.json").write_text(json.dumps(manifest))
    assert file_entry(half / "decoder.pte")["sha256"] == manifest["artifacts"]["decoder"]["sha256"]
    cmd = portable_command(portable_runner, cpu="max,sme=off")
    runs = {}
    for name, bundle in (("half", half), ("full", full)):
        proc = _run(cmd, bundle, tmp_path / f"{name}.wav", "--seed", "4", "--threads", "2", "--dump",
                    str(tmp_path / name), env=no_sysroot_env())
        assert proc.returncode == 0, proc.stderr
        runs[name] = runner_report(proc)["precision"]
    assert runs == {"half": {"text_encoder": "fp32", "dit": "fp32", "decoder": "fp16"},
                    "full": {"text_encoder": "fp32", "dit": "fp32", "decoder": "fp32"}}
    last = sorted((tmp_path / "half").glob("latents_step*.npy"))[-1].name
    np.testing.assert_array_equal(np.load(tmp_path / "half" / last), np.load(tmp_path / "full" / last))
    a, b = read_float_wav(tmp_path / "half.wav"), read_float_wav(tmp_path / "full.wav")
    assert np.abs(a - b).max() > 0, "the decoder computed in fp32: the export did not cast it to half"
    assert sqnr_db(b, a) >= load_recipe("mobile").components["decoder"].sqnr_floor_db, sqnr_db(b, a)


_QEMU_PYTHON_RUN = """
import json, sys
import numpy as np
from edgegen.bundle_pipeline import BundlePipeline
from edgegen.request import GenerateRequest
bundle, prompt, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
with BundlePipeline.open(bundle, threads=2) as bp:
    np.save(out, bp.generate(GenerateRequest(prompt, seconds=seconds, seed=4)))
    print(json.dumps({c: a.precision for c, a in bp.artifacts.items()}))
"""


@pytest.mark.aarch64
def test_python_runtime_computes_the_mobile_decoder_in_fp16_under_qemu(aarch64_python, bundle_factory, tmp_path):
    """edgegen's own Python runtime (BundlePipeline, what `edgegen run` runs) under an aarch64 CPython in qemu
    (-cpu max: fp16 arithmetic, /proc/cpuinfo saying so): it reads the CPU's fp16 support, passes FORCE_FP16 for the
    `mobile` decoder of android-arm64-litert, and names fp16 as the precision that ran; the same bundle told
    `fp16_compute = false` runs fp32. The audio then differs by fp16-sized error above the recipe's floor. Were the
    flag dropped, the two would be bit-identical."""
    from edgegen.metrics import sqnr_db
    from edgegen.recipes import load_recipe
    from tests import aarch64_python as a64

    bundle = bundle_factory("litert", "mobile", target="android-arm64-litert")
    told_fp32 = _told_fp32(bundle, tmp_path / "fp32-bundle")
    cmd = with_arm64_cpuinfo(a64.command(aarch64_python, cpu="max,sme=off"))
    repo = Path(__file__).resolve().parents[1]
    env = {**no_sysroot_env(), "PYTHONPATH": f"{aarch64_python / 'site'}:{repo}", "PYTHONNOUSERSITE": "1"}
    precision = {}
    for name, b in (("half", bundle), ("full", told_fp32)):
        proc = subprocess.run([*cmd, "-c", _QEMU_PYTHON_RUN, str(b), PROMPT, str(SECONDS), str(tmp_path / name)],
                              capture_output=True, text=True, timeout=600, cwd="/", env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        precision[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert precision["half"] == {"text_encoder": "fp32", "dit": "fp32", "decoder": "fp16"}
    assert precision["full"]["decoder"] == "fp32"
    a, b = np.load(tmp_path / "half.npy"), np.load(tmp_path / "full.npy")
    assert np.abs(a - b).max() > 0, "FORCE_FP16 did not reach XNNPACK: the decoder computed in fp32"
    assert sqnr_db(b, a) >= load_recipe("mobile").components["decoder"].sqnr_floor_db, sqnr_db(b, a)
