"""The native runner on schema-3 bundles: a stateful streaming decoder (edgegen.streaming.decode_stateful).

The decoder artifact takes latents [1, 64, W], position [2] and state [1, S] and returns audio [1, 2, W*hop] and
next_state [1, S]; the runner calls it on back-to-back windows (zeros past the sequence), carries the state from call
to call and drops the first `delay` samples of the stream. It must give `edgegen run` (BundlePipeline) the same
samples on the same bundle, ExecuTorch and LiteRT, report the calls and latent frames it decoded, and refuse a
schema-3 manifest whose stream or decoder signature is incomplete with one error line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edgegen.bundle_pipeline import BundlePipeline
from edgegen.common import num_samples
from edgegen.request import GenerateRequest
from edgegen.streaming import stateful_calls
from edgegen.metrics import rel_err
from tests.helpers import TINY_DECODER_LAYERS, no_sysroot_env, portable_command, read_float_wav, runner_report

pytestmark = [pytest.mark.litert, pytest.mark.executorch]

PROMPT, SEED = "a warm analog synth pad with slow attack", 3


def _run(cmd: list[str], bundle: Path, out: Path, seconds: float, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, "--bundle", str(bundle), "--prompt", PROMPT, "--seconds", repr(seconds), "--seed", str(SEED),
                           "--threads", "2", "-o", str(out), *extra], capture_output=True, text=True, timeout=600, cwd="/",
                          env=env)




def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _check_against_edgegen_run(host_runner, bundle: Path, tmp_path: Path, seconds: float, whole_decoder=None) -> dict:
    """Runs the host runner on `bundle` and checks it against BundlePipeline; returns the JSON report."""
    m = _manifest(bundle)
    stream, T = m["decoder_stream"], m["latent_length"]
    assert m["schema_version"] == 3 and stream["mode"] == "stateful"
    with BundlePipeline.open(bundle, threads=2) as bp:
        ref = bp.generate(GenerateRequest(PROMPT, seconds=seconds, seed=SEED))
        frames_decoded = bp.decoded_latent_frames(ref.shape[1])
    proc = _run([str(host_runner)], bundle, tmp_path / "out.wav", seconds, "--dump", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    got = read_float_wav(tmp_path / "out.wav")
    n = min(num_samples(seconds, 44100), T * stream["hop"])
    assert got.shape == ref.shape == (2, n)
    assert np.array_equal(got, ref), float(np.abs(got - ref).max())
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "audio.npy"), got)
    report = runner_report(proc)
    calls = stateful_calls(n, window=stream["window"], hop=stream["hop"], delay=stream["delay"])
    assert report["decoder_calls"] == calls
    assert report["decoded_latent_frames"] == calls * stream["window"] == frames_decoded
    assert report["frames"] == n
    assert 0 < report["time_to_first_audio_s"] < report["e2e_s"]
    if whole_decoder is not None:  # the stream is the whole-sequence decode of the same latents, up to rounding
        latents = torch.from_numpy(np.load(tmp_path / "d" / f"latents_step{m['sampler']['steps'] - 1}.npy"))
        with torch.no_grad():
            whole = whole_decoder(latents)[0, :, :n].numpy()
        assert rel_err(whole, got) < 1e-4
    return report


@pytest.mark.parametrize("seconds", ["full", 1.0])
@pytest.mark.parametrize("backend", ["litert", "executorch"])
def test_stateful_bundle_matches_edgegen_run(host_runner, stateful, tiny_long, tmp_path, backend, seconds):
    """Schema 3 on both backends: the same decoder calls as `edgegen run`, the same samples (bit for bit), a full
    clip (every latent frame, the last window zero-padded) and a short one (only the calls its samples need)."""
    bundle = stateful(backend)
    seconds = _manifest(bundle)["max_seconds"] if seconds == "full" else seconds
    report = _check_against_edgegen_run(host_runner, bundle, tmp_path, seconds, whole_decoder=tiny_long.decoder)
    assert report["backend"] == backend and report["decoder_calls"] > 1


@pytest.fixture(scope="module")
def small_window(tiny_long, stateful, tmp_path_factory) -> Path:
    """A LiteRT schema-3 bundle with 4-frame windows: W*hop (8192) <= delay (9738), so the first calls yield no
    audio. Only the decoder is exported; text encoder and DiT are the `stateful` bundle's."""
    from edgegen.bundle import file_entry
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    root = tmp_path_factory.mktemp("stateful-w4")
    export_bundle(tiny_long, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=root / "decoder",
                  components=("decoder",), decoder_window=4)
    out = root / "bundle"
    shutil.copytree(stateful("litert"), out)
    shutil.copy(root / "decoder" / "decoder.tflite", out / "decoder.tflite")
    m, dec = _manifest(out), _manifest(root / "decoder")
    m["artifacts"]["decoder"] = {**dec["artifacts"]["decoder"], **file_entry(out / "decoder.tflite")}
    m["decoder_stream"] = dec["decoder_stream"]
    (out / "manifest.json").write_text(json.dumps(m, indent=2))
    return out


@pytest.mark.parametrize("seconds", ["full", 0.1])
def test_windows_shorter_than_the_delay_emit_nothing_first(host_runner, small_window, tmp_path, seconds):
    stream = _manifest(small_window)["decoder_stream"]
    assert stream["window"] * stream["hop"] <= stream["delay"]
    seconds = _manifest(small_window)["max_seconds"] if seconds == "full" else seconds
    report = _check_against_edgegen_run(host_runner, small_window, tmp_path, seconds)
    assert report["decoder_calls"] > stream["delay"] // (stream["window"] * stream["hop"])


def _drop(key: str):
    return lambda m: m["decoder_stream"].pop(key)


def _decoder_tensor(kind: str, tensor: str, **change):
    def edit(m):
        next(t for t in m["artifacts"]["decoder"][kind] if t["name"] == tensor).update(change)
    return edit


def _schema2_fields(m):
    s = m["decoder_stream"]
    m["decoder_stream"] = {"window": s["window"], "overlap": 1, "hop": s["hop"], "receptive_field": 1}


BAD = {  # case -> (manifest edit, words of the one error line)
    "state_size_missing": (_drop("state_size"), "'decoder_stream.state_size' is missing"),
    "delay_missing": (_drop("delay"), "'decoder_stream.delay' is missing"),
    "mode_missing": (_drop("mode"), "'decoder_stream.mode' is missing"),
    "mode_not_stateful": (lambda m: m["decoder_stream"].update(mode="overlap"), "'decoder_stream.mode' is 'overlap'"),
    "window_zero": (lambda m: m["decoder_stream"].update(window=0), "'decoder_stream.window' must be in 1.."),
    "delay_negative": (lambda m: m["decoder_stream"].update(delay=-1), "'decoder_stream.delay' must be in 0.."),
    "state_size_zero": (lambda m: m["decoder_stream"].update(state_size=0), "'decoder_stream.state_size' must be in 1.."),
    "state_size_other": (lambda m: m["decoder_stream"].update(state_size=m["decoder_stream"]["state_size"] + 1),
                         "artifacts.decoder.inputs[2].shape' is [1,"),
    "state_shape_wrong": (_decoder_tensor("inputs", "state", shape=[1, 7]), "artifacts.decoder.inputs[2].shape' is [1,7]"),
    "next_state_shape_wrong": (_decoder_tensor("outputs", "next_state", shape=[1, 7]),
                               "artifacts.decoder.outputs[1].shape' is [1,7]"),
    "position_shape_wrong": (_decoder_tensor("inputs", "position", shape=[3]), "artifacts.decoder.inputs[1].shape' is [3]"),
    "position_renamed": (_decoder_tensor("inputs", "position", name="pos"), "the runner needs exactly [latents, position, state]"),
    "next_state_missing": (lambda m: m["artifacts"]["decoder"]["outputs"].pop(1),
                           "the runner needs exactly [audio, next_state]"),
    "window_not_the_decoders": (lambda m: m["decoder_stream"].update(window=m["decoder_stream"]["window"] - 1),
                                "artifacts.decoder.inputs[0].shape' is [1,64,"),
    "schema2_fields_only": (_schema2_fields, "has the overlapped-window fields of schema 2"),
    "no_decoder_stream": (lambda m: m.pop("decoder_stream"), "must be present exactly when schema_version is 2 or 3"),
    "stateful_in_schema_2": (lambda m: m.update(schema_version=2), "a stateful decoder_stream needs schema_version 3"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_stateful_manifest_is_refused_with_one_line(host_runner, stateful, tmp_path, case):
    edit, needle = BAD[case]
    bundle = tmp_path / "bundle"
    shutil.copytree(stateful("litert"), bundle)
    m = _manifest(bundle)
    edit(m)
    (bundle / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "out"
    out.mkdir()
    proc = _run([str(host_runner)], bundle, out / "x.wav", 1.0, "--dump", str(out / "dump"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: ") and needle in lines[0], proc.stderr
    assert list(out.iterdir()) == []


@pytest.mark.aarch64
def test_portable_runner_on_stateful_litert_under_qemu(host_runner, portable_runner, stateful, tmp_path):
    """The portable aarch64 folder under qemu, no host sysroot: the same calls and, up to the two CPUs' kernel
    rounding, the same audio as the host runner."""
    bundle = stateful("litert")
    arm = _run(portable_command(portable_runner, cpu="max,sme=off", arm64_cpuinfo=True), bundle, tmp_path / "arm.wav", 1.0,
               env=no_sysroot_env())
    assert arm.returncode == 0, arm.stderr
    host = _run([str(host_runner)], bundle, tmp_path / "host.wav", 1.0)
    assert host.returncode == 0, host.stderr
    a, h = read_float_wav(tmp_path / "arm.wav"), read_float_wav(tmp_path / "host.wav")
    assert a.shape == h.shape
    rel = float(np.abs(a - h).max() / np.abs(h).max())
    assert rel <= 1e-4, rel
    ra, rh = runner_report(arm), runner_report(host)
    assert (ra["decoder_calls"], ra["decoded_latent_frames"]) == (rh["decoder_calls"], rh["decoded_latent_frames"])
    assert ra["backend"] == "litert" and ra["decoder_calls"] > 1


def test_int8_decoder_on_executorch_matches_edgegen_run(host_runner, stateful, int8_stateful_decoder, tmp_path):
    """An ExecuTorch decoder whose 2-D convolutions are XNNPACK's dynamically quantized ones (every layer int8,
    the kernels `fast` uses) runs in the native runner exactly as in `edgegen run`. Only the decoder is exported
    (the session's `int8_stateful_decoder`); the text encoder and DiT are the fp32 `stateful` bundle's."""
    from edgegen.bundle import file_entry

    out = tmp_path / "bundle"
    shutil.copytree(stateful("executorch"), out)
    shutil.copy(int8_stateful_decoder / "decoder.pte", out / "decoder.pte")
    m, dec = _manifest(out), _manifest(int8_stateful_decoder)
    assert dec["artifacts"]["decoder"]["schemes"] == {"int8": TINY_DECODER_LAYERS}
    m["artifacts"]["decoder"] = {**dec["artifacts"]["decoder"], **file_entry(out / "decoder.pte")}
    m["decoder_stream"] = dec["decoder_stream"]
    (out / "manifest.json").write_text(json.dumps(m, indent=2))
    _check_against_edgegen_run(host_runner, out, tmp_path, 1.0)
