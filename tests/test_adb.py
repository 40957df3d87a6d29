"""`edgegen bench --adb` / `parity --adb` against tests/fake_adb.py: a stand-in adb whose "device" is a temp folder.

No phone runs here. The runner pushed is the real portable aarch64 folder (`edgegen build-runner --target
android-arm64-portable`, the default --runner): on the "device" its launcher starts it through the glibc loader it
carries, under qemu-aarch64 (FAKE_ADB_WRAPPER) with no host sysroot, and, for LiteRT, with an arm64 /proc/cpuinfo
(FAKE_ADB_CPUINFO). So this covers the whole path (preflight, content-addressed push of bin/ and lib/, remote run,
pull, report) for both backends, except a real device and its kernel. The host-built runner stands in for an NDK
build's flat folder (and, wrapped, for a runner whose output is off).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgegen.bundle import file_entry
from edgegen.cli import main
from tests import fake_adb
from tests.helpers import ANY_LINE, ARM64_CPUINFO, assert_one_error

pytestmark = pytest.mark.executorch


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """Environment of the fake device; returns (adb wrapper path, log file)."""
    adb = fake_adb.install(tmp_path / "bin")
    log = tmp_path / "adb.log"
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "device"))
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_DEVICES", "fake-0001")
    monkeypatch.delenv("QEMU_LD_PREFIX", raising=False)
    return adb, log


@pytest.fixture
def arm64_phone(phone, monkeypatch):
    """The fake device running pushed aarch64 code under qemu, with an arm64 /proc/cpuinfo."""
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    assert qemu is not None, "qemu-aarch64 not found; install it with `apt-get install qemu-user`"
    monkeypatch.setenv("FAKE_ADB_WRAPPER", f"{qemu} -cpu max,sme=off")
    monkeypatch.setenv("FAKE_ADB_CPUINFO", str(ARM64_CPUINFO))
    return phone


def _dummy_bundle(root: Path, backend: str = "executorch") -> Path:
    """A manifest-valid bundle of placeholder files, exported from "another model": enough for preflight, never run."""
    root.mkdir()
    ext = "pte" if backend == "executorch" else "tflite"
    files = {n: root / n for n in (f"text_encoder.{ext}", f"dit.{ext}", f"decoder.{ext}", "spiece.model")}
    for p in files.values():
        p.write_bytes(b"x" * 1000)
    tensor = [{"name": "x", "dtype": "float32", "shape": [1, 64, 16]}]
    manifest = {"schema_version": 1, "edgegen_version": "0", "backend": backend, "runtime_version": "x",
                "target": {"name": "t", "description": "", "backend": backend, "abi": "arm64-v8a", "threads": 2,
                           "fp16_compute": False, "xnnpack_flags": [], "min_api_level": None},
                "recipe": {"name": "fp32", "description": "", "components": {
                    c: {"rules": [{"pattern": "*", "scheme": "fp32", "group_size": 32, "fallback": None, "backend": None}],
                        "sqnr_floor_db": None} for c in ("text_encoder", "dit", "decoder")}},
                "source": {"model": "/models/other", "config_sha256": "ab" * 32}, "sample_rate": 44100,
                "channels": 2, "latent_length": 16, "max_seconds": 0.7,
                "sampler": {"type": "pingpong", "steps": 8, "logsnr_max": -6.0, "logsnr_min": 2.0},
                "tokenizer": {**file_entry(files["spiece.model"]), "max_length": 64, "eos_id": 1, "pad_id": 0},
                "artifacts": {c: {**file_entry(files[f"{c}.{ext}"]), "inputs": tensor, "outputs": tensor}
                              for c in ("text_encoder", "dit", "decoder")}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _portable_without_loader(tmp_path: Path, portable: Path) -> Path:
    folder = tmp_path / "runner-no-loader"
    shutil.copytree(portable, folder)
    (folder / "lib" / "ld-linux-aarch64.so.1").unlink()
    return folder


def _flat_without_litert(tmp_path: Path, host: Path) -> Path:
    folder = tmp_path / "runner-ndk-style"
    shutil.copytree(host.parent, folder)
    (folder / "libLiteRt.so").unlink()
    return folder


PREFLIGHT = {  # case -> (env changes, extra args, words the one error line must contain)
    "no_adb": ({}, ["--adb-path", "/nonexistent/adb"], "adb not found"),
    "no_device": ({"FAKE_ADB_DEVICES": ""}, [], "no device"),
    "two_devices": ({"FAKE_ADB_DEVICES": "a1,b2"}, [], "--serial"),
    "unknown_serial": ({}, ["--serial", "zz9"], "zz9 is not connected"),
    "wrong_abi": ({"FAKE_ADB_ABI": "x86_64"}, [], "ABI x86_64"),
    "32bit_only": ({"FAKE_ADB_ABI": "armeabi-v7a", "FAKE_ADB_ABILIST": "armeabi-v7a,armeabi"}, [], "is 32-bit only"),
    "no_storage": ({"FAKE_ADB_FREE_KB": "1000"}, [], "MiB free"),
    "no_runner": ({}, ["--runner", "/nonexistent/runner"], "edgegen build-runner --target android-arm64-portable"),
    "no_loader": ({}, ["--runner", "PORTABLE_NO_LOADER"], "ld-linux-aarch64.so.1 is missing"),
    "litert_without_library": ({}, ["--runner", "FLAT_NO_LITERT", "--backend-litert"], "has no libLiteRt.so"),
}


@pytest.mark.parametrize("case", sorted(PREFLIGHT))
@pytest.mark.parametrize("command", ["bench", "parity"])
def test_preflight_fails_with_one_line(phone, host_runner, portable_runner, tmp_path, monkeypatch, case, command):
    env, extra, needle = PREFLIGHT[case]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    litert = "--backend-litert" in extra
    extra = [{"PORTABLE_NO_LOADER": str(_portable_without_loader(tmp_path, portable_runner)) if a == "PORTABLE_NO_LOADER" else None,
              "FLAT_NO_LITERT": str(_flat_without_litert(tmp_path, host_runner)) if a == "FLAT_NO_LITERT" else None}.get(a) or a
             for a in extra if a != "--backend-litert"]
    bundle = _dummy_bundle(tmp_path / "bundle", "litert" if litert else "executorch")
    args = ["--adb", "--adb-path", str(phone[0]), "--runner", str(portable_runner), "-b", str(bundle), *extra]
    res = CliRunner().invoke(main, [command, *args, *(["-m", "random:tiny"] if command == "parity" else [])])
    assert_one_error(res, needle)


def test_bench_adb_needs_a_bundle():
    res = CliRunner().invoke(main, ["bench", "--adb", "-m", "random:tiny"])
    assert res.exit_code == 2 and "--bundle" in res.stderr


@pytest.mark.aarch64
@pytest.mark.parametrize("backend", ["executorch", pytest.param("litert", marks=pytest.mark.litert)])
def test_bench_adb_json_and_second_run_pushes_nothing(arm64_phone, portable_runner, bundle_factory, backend):
    adb, log = arm64_phone
    args = ["bench", "--adb", "--adb-path", str(adb), "--runner", str(portable_runner),
            "-b", str(bundle_factory(backend, "fp32")), "--iters", "2", "--warmup", "0", "-s", "0.5"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["schema"] == "edgegen.bench/1" and result["kind"] == "device"
    assert {"e2e_s", "rtf", "time_to_first_audio_s", "dit_step_s", "load_s", "peak_rss_mb", "iters", "warmup",
            "e2e_runs_s", "audio_seconds", "backend", "recipe", "threads"} <= result.keys()
    assert set(result["stages"]) == {"load", "text_encoder", "dit", "decoder"}
    assert result["device"] == {"serial": "fake-0001", "abi": "arm64-v8a", "model": "FakePhone"}
    assert result["int8_features"] == ["asimddp"]  # the phone's /proc/cpuinfo (fixture: dotprod, no i8mm)
    assert len(result["e2e_runs_s"]) == 2 and result["audio_seconds"] == pytest.approx(0.5)
    assert "end to end" in res.stdout
    assert result["backend"] == backend
    pushed = [json.loads(line)["argv"] for line in log.read_text().splitlines() if '"push"' in line]
    ext = "pte" if backend == "executorch" else "tflite"
    assert {Path(a[-2]).name for a in pushed} >= {"manifest.json", f"dit.{ext}", "edgegen-runner", "ld-linux-aarch64.so.1",
                                                  "libLiteRt.so"}
    assert {a[-1].split("/runner-")[1].split("/", 1)[-1] for a in pushed if "/runner-" in a[-1]} >= {
        "edgegen-runner", "bin/edgegen-runner", "lib/ld-linux-aarch64.so.1"}

    log.write_text("")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    assert calls and not [c for c in calls if "push" in c]


@pytest.mark.aarch64
@pytest.mark.parametrize("backend", ["executorch", pytest.param("litert", marks=pytest.mark.litert)])
def test_parity_adb_passes_on_fp32_bundle(arm64_phone, portable_runner, bundle_factory, tmp_path, backend):
    adb, _ = arm64_phone
    bundle = bundle_factory(backend, "fp32")
    res = CliRunner().invoke(main, ["parity", "--adb", "--adb-path", str(adb), "--runner", str(portable_runner),
                                    "-b", str(bundle), "-m", "random:tiny", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "overall: PASS" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) == {"schema", "bundle", "backend", "recipe", "target", "model", "tokens_match", "passed",
                           "components", "end_to_end"}
    assert report["schema"] == "edgegen.parity/2" and report["tokens_match"] and report["end_to_end"]["gated"]
    assert report["backend"] == backend
    assert set(report["components"]) == {"text_encoder", "dit", "decoder"}
    assert len(report["components"]["dit"]["cases"]) == 8 and len(report["components"]["text_encoder"]["cases"]) == 6


CORRUPTING_RUNNER = """\
import pathlib, subprocess, sys
import numpy as np
rc = subprocess.run([REAL_RUNNER, *sys.argv[1:]]).returncode
if rc == 0 and "--dump" in sys.argv:
    audio = pathlib.Path(sys.argv[sys.argv.index("--dump") + 1]) / "audio.npy"
    a = np.load(audio)
    CORRUPT
    np.save(audio, a)
sys.exit(rc)
"""
CORRUPTIONS = {  # how the dumped audio is spoiled -> a line the report must show
    "one_percent_off": ("a *= 1.01", "decoder "),
    "nan": ("a[1, 5] = np.nan", "end_to_end    the bundle's end-to-end audio holds 1 non-finite value(s)"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_parity_adb_fails_when_the_device_output_is_off(phone, host_runner, bundle_factory, tmp_path, case):
    """A runner whose dumped audio is 1% off, or holds a NaN: the decoder and end-to-end gates fail, exit 1,
    and the JSON report stays strict (no NaN constants)."""
    adb, _ = phone
    corrupt, needle = CORRUPTIONS[case]
    bad = tmp_path / "runner"
    bad.mkdir()
    real = repr(str(host_runner))
    script = CORRUPTING_RUNNER.replace("REAL_RUNNER", real).replace("CORRUPT", corrupt)
    (bad / "edgegen-runner").write_text(f"#!{sys.executable}\n" + script)
    (bad / "edgegen-runner").chmod(0o755)
    res = CliRunner().invoke(main, ["parity", "--adb", "--adb-path", str(adb), "--runner", str(bad),
                                    "-b", str(bundle_factory("executorch", "fp32")), "-m", "random:tiny",
                                    "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 1, res.output
    assert "overall: FAIL" in res.stdout and needle in res.stdout
    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert not report["components"]["decoder"]["passed"] and not report["end_to_end"]["passed"]
    assert report["components"]["dit"]["passed"] and report["components"]["text_encoder"]["passed"]


@pytest.mark.parametrize("command", ["bench", "parity"])
def test_adb_refuses_bad_seconds_or_model_before_pushing(phone, host_runner, tmp_path, command):
    """bench -s beyond the bundle's 0.7 s, parity against another model: one line, exit 2, nothing pushed."""
    adb, log = phone
    bundle = _dummy_bundle(tmp_path / "bundle")
    args = ["--adb", "--adb-path", str(adb), "--runner", str(host_runner.parent), "-b", str(bundle)]
    extra = ["-s", "10"] if command == "bench" else ["-m", "random:tiny"]
    res = CliRunner().invoke(main, [command, *args, *extra])
    needle = "--seconds 10 is out of range" if command == "bench" else "not from random:tiny"
    assert_one_error(res, needle, after=ANY_LINE)
    assert not [line for line in log.read_text().splitlines() if '"push"' in line]


@pytest.mark.aarch64
def test_audio_to_audio_over_adb(arm64_phone, portable_runner, bundle_factory, tmp_path):
    """An --audio-to-audio bundle on the device: parity adds the encoder and audio_to_audio rows from the runner's
    dumps; bench --init-audio pushes the prepared init audio and times the encoder stage."""
    import numpy as np
    import soundfile as sf

    from tests.helpers import AUDIO_TO_AUDIO

    adb, _ = arm64_phone
    bundle = bundle_factory("executorch", "fp32", components=AUDIO_TO_AUDIO)
    res = CliRunner().invoke(main, ["parity", "--adb", "--adb-path", str(adb), "--runner", str(portable_runner),
                                    "-b", str(bundle), "-m", "random:tiny", "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["components"]["encoder"]["passed"] and report["audio_to_audio"]["passed"]
    assert report["audio_to_audio"]["gated"] and report["audio_to_audio"]["metrics"]["rel_err"] <= 1e-3
    sf.write(tmp_path / "take.wav", 0.3 * np.sin(np.arange(8000, dtype=np.float32) / 7.0), 22050, subtype="PCM_16")
    res = CliRunner().invoke(main, ["bench", "--adb", "--adb-path", str(adb), "--runner", str(portable_runner),
                                    "-b", str(bundle), "--init-audio", str(tmp_path / "take.wav"), "--iters", "1",
                                    "--warmup", "0", "-s", "0.5"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert list(result["stages"]) == ["load", "encoder", "text_encoder", "dit", "decoder"]
    assert result["init_noise_level"] == 0.5
