"""The native runner (android_demo/runner) against a Python reference of the same loop on the same .pte files.

A toy bundle (C=32, T=8, steps=4, hop 2048: audio [1, 2, 16384]) is exported once per session with tiny
XNNPACK-lowered modules; the host runner is built once per session into the pytest cache (warm rebuilds take
seconds); the aarch64 runner is cross-built and run under qemu-aarch64. The JNI bridge is compiled against the
host JDK's jni.h.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgegen.noise import gaussian_noise
from edgegen.runner_build import RUNNER_SOURCE, RunnerBuildError, build_runner, executorch_sdk_root, qemu_aarch64_command

pytestmark = pytest.mark.executorch

C, T, L, HOP, STEPS, D = 32, 8, 64, 2048, 4, 64
PROMPT = "a warm analog synth pad with slow attack"
SECONDS = 0.3
JNI_SOURCE = RUNNER_SOURCE.parent / "app" / "src" / "main" / "cpp" / "edgegen_jni.cpp"


class ToyTextEncoder(nn.Module):
    """token_ids, attention_mask int32 [1, L], seconds_total [1] -> cross [1, L+1, C], global [1, C]."""

    def __init__(self):
        super().__init__()
        self.emb, self.sec, self.glob = nn.Embedding(100, C), nn.Linear(1, C), nn.Linear(C, C)

    def forward(self, token_ids, attention_mask, seconds_total):
        h = self.emb(token_ids.long()) * attention_mask.float().unsqueeze(-1)  # (1, L, C)
        cross = torch.cat([h, self.sec(seconds_total.view(1, 1, 1))], dim=1)  # (1, L+1, C)
        return cross, self.glob(cross.mean(dim=1))  # (1, C)


class ToyDiT(nn.Module):
    """x [1, D, T], t [1], cross [1, L+1, C], global [1, C] -> v [1, D, T]."""

    def __init__(self):
        super().__init__()
        self.inp, self.out, self.tproj = nn.Linear(D, C), nn.Linear(C, D), nn.Linear(1, C)

    def forward(self, x, t, cross_attn_cond, global_cond):
        h = self.inp(x.transpose(1, 2)) + self.tproj(t.view(1, 1, 1))  # (1, T, C)
        h = h + global_cond.unsqueeze(1) + cross_attn_cond.mean(dim=1, keepdim=True)
        return self.out(torch.tanh(h)).transpose(1, 2)  # (1, D, T)


class ToyDecoder(nn.Module):
    """latents [1, D, n] -> audio [1, 2, n*HOP], frame by frame (receptive field 0: windows stitch exactly)."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(D, 2 * HOP)

    def forward(self, latents):
        n = latents.shape[-1]
        y = self.up(latents.transpose(1, 2))  # (1, n, 2*HOP)
        return y.view(1, n, 2, HOP).permute(0, 2, 1, 3).reshape(1, 2, n * HOP)


def _spec(name, dtype, shape):
    return {"name": name, "dtype": dtype, "shape": shape}


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory) -> Path:
    import sentencepiece as spm

    out = tmp_path_factory.mktemp("toy_bundle")
    torch.manual_seed(0)
    corpus = tmp_path_factory.mktemp("spm") / "corpus.txt"
    corpus.write_text("\n".join(["a warm analog synth pad with slow attack", "drum loop 120 bpm",
                                 "birds singing in a forest at dawn", "deep bass hits and metallic percussion"] * 20))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(corpus.parent / "spiece"), vocab_size=40,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    shutil.copy(corpus.parent / "spiece.model", out / "spiece.model")
    f32 = "float32"
    specs = {
        "text_encoder": (ToyTextEncoder(), (torch.zeros(1, L, dtype=torch.int32), torch.ones(1, L, dtype=torch.int32), torch.ones(1)),
                         [_spec("token_ids", "int32", [1, L]), _spec("attention_mask", "int32", [1, L]), _spec("seconds_total", f32, [1])],
                         [_spec("cross_attn_cond", f32, [1, L + 1, C]), _spec("global_cond", f32, [1, C])]),
        "dit": (ToyDiT(), (torch.randn(1, D, T), torch.ones(1), torch.randn(1, L + 1, C), torch.randn(1, C)),
                [_spec("x", f32, [1, D, T]), _spec("t", f32, [1]), _spec("cross_attn_cond", f32, [1, L + 1, C]), _spec("global_cond", f32, [1, C])],
                [_spec("v", f32, [1, D, T])]),
        "decoder": (ToyDecoder(), (torch.randn(1, D, T),), [_spec("latents", f32, [1, D, T])], [_spec("audio", f32, [1, 2, T * HOP])]),
    }
    artifacts = {}
    for name, (module, inputs, ins, outs) in specs.items():
        data = _lower(module, inputs)
        (out / f"{name}.pte").write_bytes(data)
        artifacts[name] = {"file": f"{name}.pte", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "inputs": ins, "outputs": outs}
    manifest = {
        "schema_version": 1, "edgegen_version": "0.0.0", "backend": "executorch", "runtime_version": "1.5.1",
        "target": {"name": "toy"}, "recipe": {"name": "fp32"}, "source": {"checkpoint": "toy"},
        "sample_rate": 44100, "channels": 2, "latent_length": T, "max_seconds": T * HOP / 44100,
        "sampler": {"type": "pingpong", "steps": STEPS, "logsnr_max": -6.0, "logsnr_min": 2.0},
        "tokenizer": {"file": "spiece.model", "max_length": L, "eos_id": 1, "pad_id": 0, "size": (out / "spiece.model").stat().st_size,
                      "sha256": hashlib.sha256((out / "spiece.model").read_bytes()).hexdigest()},
        "artifacts": artifacts, "notes": {"made_by": "tests/test_runner.py"},  # unknown keys are ignored
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


WINDOW, OVERLAP = 5, 1  # streamed toy: T = 8 frames -> windows [0,5) keeping [0,4), [3,8) keeping [4,8)


@pytest.fixture(scope="session")
def stream_bundle(toy_bundle, tmp_path_factory) -> tuple[Path, nn.Module]:
    """(bundle, decoder): the toy bundle with a streamed decoder (schema 2) exported for [1, D, WINDOW]."""
    out = tmp_path_factory.mktemp("stream_bundle") / "bundle"
    shutil.copytree(toy_bundle, out)
    decoder = ToyDecoder().eval()
    data = _lower(decoder, (torch.randn(1, D, WINDOW),))
    (out / "decoder.pte").write_bytes(data)

    def streamed(m):
        m["schema_version"] = 2
        m["decoder_stream"] = {"window": WINDOW, "overlap": OVERLAP, "hop": HOP, "receptive_field": 0}
        m["artifacts"]["decoder"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                         inputs=[_spec("latents", "float32", [1, D, WINDOW])],
                                         outputs=[_spec("audio", "float32", [1, 2, WINDOW * HOP])])

    _edit_manifest(out, streamed)
    return out, decoder


def _lower(module: nn.Module, inputs: tuple) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = to_edge_transform_and_lower(torch.export.export(module.eval(), inputs), partitioner=[XnnpackPartitioner()])
    return program.to_executorch().buffer


@pytest.fixture(scope="session")
def int8_bundle(toy_bundle, tmp_path_factory) -> Path:
    """The toy bundle with its DiT int8-weight / int8-dynamic-activation quantized (the real int8 recipe's kernels)."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    out = tmp_path_factory.mktemp("int8_bundle")
    shutil.copytree(toy_bundle, out, dirs_exist_ok=True)
    torch.manual_seed(1)
    dit = ToyDiT().eval()
    quantize_(dit, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0)),
              filter_fn=lambda m, _: isinstance(m, nn.Linear) and m.in_features >= 16)  # Linear(1, C) has no axis to quantize
    data = _lower(dit, (torch.randn(1, D, T), torch.ones(1), torch.randn(1, L + 1, C), torch.randn(1, C)))
    (out / "dit.pte").write_bytes(data)
    _edit_manifest(out, lambda m: (m["recipe"].update(name="int8"),
                                   m["artifacts"]["dit"].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))))
    return out


# Outside tmp so warm sessions only relink; build trees and downloads also live under ~/.cache/edgegen.
RUNNERS_DIR = Path.home() / ".cache" / "edgegen" / "test-runners"


@pytest.fixture(scope="session")
def host_runner() -> Path:
    return build_runner(target="host", out_dir=RUNNERS_DIR / "host", log=lambda _: None)


def reference(bundle: Path, prompt: str, seconds: float, noise: np.ndarray) -> dict[str, np.ndarray]:
    """The ping-pong loop of the issue spec in numpy/torch float32, running the bundle's .pte files via executorch.runtime."""
    import sentencepiece as spm
    from executorch.runtime import Runtime

    m = json.loads((bundle / "manifest.json").read_text())
    tok, smp = m["tokenizer"], m["sampler"]
    ids = spm.SentencePieceProcessor(model_file=str(bundle / tok["file"])).EncodeAsIds(prompt)[: tok["max_length"] - 1] + [tok["eos_id"]]
    token_ids = np.full((1, tok["max_length"]), tok["pad_id"], np.int32)
    token_ids[0, : len(ids)] = ids
    mask = (np.arange(tok["max_length"]) < len(ids)).astype(np.int32)[None]
    runtime = Runtime.get()
    te, dit, dec = (runtime.load_program(str(bundle / m["artifacts"][n]["file"])).load_method("forward") for n in ("text_encoder", "dit", "decoder"))
    cross, glob = te.execute([torch.from_numpy(token_ids), torch.from_numpy(mask), torch.tensor([seconds], dtype=torch.float32)])
    logsnr = np.linspace(smp["logsnr_max"], smp["logsnr_min"], smp["steps"] + 1)
    t = 1.0 / (1.0 + np.exp(logsnr))
    t[0], t[-1] = 1.0, 0.0
    t = torch.from_numpy(t.astype(np.float32))
    x, latents = torch.from_numpy(noise[0:1].copy()), []
    for i in range(smp["steps"]):
        denoised = x - t[i : i + 1] * dit.execute([x, t[i : i + 1], cross, glob])[0]  # (1, D, T)
        last = i + 1 == smp["steps"]
        x = denoised if last else (1 - t[i + 1]) * denoised + t[i + 1] * torch.from_numpy(noise[i + 1 : i + 2])
        latents.append(x.numpy().copy())
    audio = dec.execute([x])[0].numpy()[0, :, : int(seconds * m["sample_rate"])]  # (2, n)
    return {"token_ids": token_ids, "attention_mask": mask, "cross_attn_cond": cross.numpy(), "global_cond": glob.numpy(),
            "latents": latents, "audio": audio}


def run_runner(cmd_prefix: list[str], bundle: Path, out: Path, *extra: str, prompt: str = PROMPT, seconds: float = SECONDS):
    cmd = [*cmd_prefix, "--bundle", str(bundle), "--prompt", prompt, "--seconds", str(seconds), "-o", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd="/")


def read_wav(path: Path) -> np.ndarray:
    """[channels, frames] float32 from a WAVE_FORMAT_IEEE_FLOAT file."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert sr == 44100 and sf.info(str(path)).subtype == "FLOAT"
    return data.T


def assert_rel_close(got: np.ndarray, ref: np.ndarray, rel: float = 1e-5) -> None:
    assert got.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-30)
    assert float(np.abs(got.astype(np.float64) - ref).max()) <= rel * scale


def test_host_runner_matches_reference(host_runner, toy_bundle, tmp_path):
    noise = np.random.default_rng(0).standard_normal((STEPS, D, T)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "out.wav", "--noise", str(tmp_path / "noise.npy"),
                      "--dump", str(tmp_path / "dump"), "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    ref = reference(toy_bundle, PROMPT, SECONDS, noise)
    dump = tmp_path / "dump"
    np.testing.assert_array_equal(np.load(dump / "token_ids.npy"), ref["token_ids"])
    np.testing.assert_array_equal(np.load(dump / "attention_mask.npy"), ref["attention_mask"])
    np.testing.assert_array_equal(np.load(dump / "noise.npy"), noise)
    for key in ("cross_attn_cond", "global_cond", "audio"):
        assert_rel_close(np.load(dump / f"{key}.npy"), ref[key])
    for k, lat in enumerate(ref["latents"]):
        assert_rel_close(np.load(dump / f"latents_step{k}.npy"), lat)
    assert_rel_close(read_wav(tmp_path / "out.wav"), ref["audio"])

    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"e2e_s", "peak_rss_mb", "time_to_first_audio_s", "rtf", "dit_step_s", "threads", "steps", "seconds"} <= report.keys()
    assert set(report["stages"]) == {"load", "text_encoder", "dit", "decoder"}
    assert (report["runner"], report["backend"], report["threads"], report["steps"]) == ("native", "executorch", 2, STEPS)
    assert len(report["dit_step_s"]) == STEPS and report["seconds"] == pytest.approx(SECONDS)


def test_seed_uses_portable_noise(host_runner, toy_bundle, tmp_path):
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "out.wav", "--seed", "1234", "--dump", str(tmp_path / "dump"))
    assert proc.returncode == 0, proc.stderr
    noise = gaussian_noise(1234, (STEPS, D, T))
    np.testing.assert_array_equal(np.load(tmp_path / "dump" / "noise.npy"), noise)
    assert_rel_close(read_wav(tmp_path / "out.wav"), reference(toy_bundle, PROMPT, SECONDS, noise)["audio"])


def test_host_runner_matches_edgegen_bundle_pipeline(host_runner, int8_bundle, tmp_path):
    """Same seed through `edgegen run`'s engine (BundlePipeline) and the native runner: same WAV samples."""
    bundle_pipeline = pytest.importorskip("edgegen.bundle_pipeline")
    ref = bundle_pipeline.BundlePipeline.open(int8_bundle, threads=2).generate(PROMPT, seconds_total=SECONDS, seed=11)
    proc = run_runner([str(host_runner)], int8_bundle, tmp_path / "out.wav", "--seed", "11", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    assert_rel_close(read_wav(tmp_path / "out.wav"), ref)


def test_int8_dit_matches_reference(host_runner, int8_bundle, tmp_path):
    proc = run_runner([str(host_runner)], int8_bundle, tmp_path / "out.wav", "--seed", "5", "--dump", str(tmp_path / "dump"))
    assert proc.returncode == 0, proc.stderr
    ref = reference(int8_bundle, PROMPT, SECONDS, gaussian_noise(5, (STEPS, D, T)))
    for k, lat in enumerate(ref["latents"]):
        assert_rel_close(np.load(tmp_path / "dump" / f"latents_step{k}.npy"), lat)
    assert_rel_close(read_wav(tmp_path / "out.wav"), ref["audio"])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["recipe"] == "int8"


@pytest.mark.parametrize("seconds, calls", [(SECONDS, 2), (0.1, 1), (T * HOP / 44100, 2)])
def test_streamed_decoder_matches_whole_decode_and_edgegen(host_runner, stream_bundle, tmp_path, seconds, calls):
    """Schema-2 bundle: the runner decodes window by window (only those `seconds` needs), the audio equals the
    whole-sequence decode of its own final latents and `edgegen run`'s BundlePipeline sample for sample."""
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.streaming import frames_to_decode, plan_windows

    bundle, decoder = stream_bundle
    proc = run_runner([str(host_runner)], bundle, tmp_path / "out.wav", "--seed", "7", "--dump", str(tmp_path / "d"),
                      seconds=seconds)
    assert proc.returncode == 0, proc.stderr
    n = int(seconds * 44100)
    with torch.no_grad():
        whole = decoder(torch.from_numpy(np.load(tmp_path / "d" / f"latents_step{STEPS - 1}.npy")))[0, :, :n].numpy()
    got = read_wav(tmp_path / "out.wav")
    assert_rel_close(got, whole)
    assert_rel_close(got, BundlePipeline.open(bundle, threads=2).generate(PROMPT, seconds_total=seconds, seed=7))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    frames = frames_to_decode(n, length=T, window=WINDOW, overlap=OVERLAP, hop=HOP)
    assert report["decoder_calls"] == len(plan_windows(frames, window=WINDOW, overlap=OVERLAP)) == calls
    assert 0 < report["time_to_first_audio_s"] < report["e2e_s"]


def test_tokenizer_empty_and_truncated_prompts(host_runner, toy_bundle, tmp_path):
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "a.wav", "--dump", str(tmp_path / "a"), prompt="")
    assert proc.returncode == 0, proc.stderr
    ids = np.load(tmp_path / "a" / "token_ids.npy")
    assert ids[0, 0] == 1 and not ids[0, 1:].any() and np.load(tmp_path / "a" / "attention_mask.npy").sum() == 1
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "b.wav", "--dump", str(tmp_path / "b"), prompt="drum loop " * 80)
    assert proc.returncode == 0 and "truncated" in proc.stderr
    ids = np.load(tmp_path / "b" / "token_ids.npy")
    assert ids[0, L - 1] == 1 and (ids[0, : L - 1] > 2).all() and np.load(tmp_path / "b" / "attention_mask.npy").all()


def _edit_manifest(bundle: Path, fn) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    fn(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _retile(m: dict, t: int) -> None:
    """Declares latent length `t` consistently everywhere, so only the .pte MethodMeta check can notice."""
    m["latent_length"] = t
    for art in m["artifacts"].values():
        for spec in art["inputs"] + art["outputs"]:
            if spec["name"] in ("x", "v", "latents"):
                spec["shape"][2] = t
            if spec["name"] == "audio":
                spec["shape"][2] = t * HOP


BAD_BUNDLES = {
    "invalid_json": lambda b: (b / "manifest.json").write_text("{\"schema_version\": 1,"),
    "schema_version": lambda b: _edit_manifest(b, lambda m: m.update(schema_version=3)),
    "v2_without_stream": lambda b: _edit_manifest(b, lambda m: m.update(schema_version=2)),
    "stream_in_v1": lambda b: _edit_manifest(b, lambda m: m.update(decoder_stream={"window": 4, "overlap": 1, "hop": HOP})),
    "stream_window_mismatch": lambda b: _edit_manifest(b, lambda m: m.update(
        schema_version=2, decoder_stream={"window": 6, "overlap": 1, "hop": HOP})),
    "backend": lambda b: _edit_manifest(b, lambda m: m.update(backend="litert")),
    "missing_key": lambda b: _edit_manifest(b, lambda m: m["sampler"].pop("steps")),
    "missing_pte": lambda b: (b / "dit.pte").unlink(),
    "missing_tokenizer": lambda b: (b / "spiece.model").unlink(),
    "tokenizer_sha": lambda b: (b / "spiece.model").write_bytes(bytes(reversed((b / "spiece.model").read_bytes()))),
    "sha_mismatch": lambda b: (b / "decoder.pte").write_bytes(bytes(reversed((b / "decoder.pte").read_bytes()))),
    "size_mismatch": lambda b: (b / "dit.pte").write_bytes((b / "dit.pte").read_bytes() + b"\0"),
    "wrong_dtype": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["dit"]["inputs"][1].update(dtype="int32")),
    "meta_mismatch": lambda b: _edit_manifest(b, lambda m: _retile(m, 16)),
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_bad_bundle_is_rejected(host_runner, toy_bundle, tmp_path, case):
    bundle = tmp_path / "bundle"
    shutil.copytree(toy_bundle, bundle)
    BAD_BUNDLES[case](bundle)
    out = tmp_path / "out" / "x.wav"
    out.parent.mkdir()
    proc = run_runner([str(host_runner)], bundle, out, "--dump", str(tmp_path / "out" / "dump"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: "), proc.stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("case", ["noise_shape", "noise_dtype", "noise_missing", "seconds_too_long", "seconds_zero", "unknown_flag"])
def test_bad_arguments_are_rejected(host_runner, toy_bundle, tmp_path, case):
    noise = tmp_path / "noise.npy"
    np.save(noise, np.zeros((STEPS, D, T + 1), np.float32) if case == "noise_shape" else np.zeros((STEPS, D, T), np.float64))
    extra = {"noise_shape": ["--noise", str(noise)], "noise_dtype": ["--noise", str(noise)],
             "noise_missing": ["--noise", str(tmp_path / "nope.npy")], "unknown_flag": ["--steps", "3"]}.get(case, [])
    seconds = {"seconds_too_long": 5.0, "seconds_zero": 0.0}.get(case, SECONDS)
    out = tmp_path / "out" / "x.wav"
    out.parent.mkdir()
    proc = run_runner([str(host_runner)], toy_bundle, out, *extra, seconds=seconds)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: "), proc.stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.aarch64
def test_aarch64_runner_under_qemu_matches_host(host_runner, toy_bundle, tmp_path):
    qemu = qemu_aarch64_command()
    assert qemu is not None, "qemu-aarch64 not found; install it with `apt-get install qemu-user`"
    exe = build_runner(target="linux-aarch64", out_dir=RUNNERS_DIR / "linux-aarch64", log=lambda _: None)
    header = exe.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # e_machine EM_AARCH64
    noise = np.random.default_rng(1).standard_normal((STEPS, D, T)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    args = ["--noise", str(tmp_path / "noise.npy"), "--threads", "2"]
    arm = run_runner([*qemu, str(exe)], toy_bundle, tmp_path / "arm.wav", *args, "--dump", str(tmp_path / "arm"))
    assert arm.returncode == 0, arm.stderr
    host = run_runner([str(host_runner)], toy_bundle, tmp_path / "host.wav", *args)
    assert host.returncode == 0, host.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "arm" / "token_ids.npy"), reference(toy_bundle, PROMPT, SECONDS, noise)["token_ids"])
    assert_rel_close(read_wav(tmp_path / "arm.wav"), read_wav(tmp_path / "host.wav"))
    assert json.loads(arm.stdout.strip().splitlines()[-1])["runner"] == "native"


@pytest.mark.aarch64
def test_aarch64_int8_dit_under_qemu_matches_host(host_runner, int8_bundle, tmp_path):
    """int8 dynamic-quant DiT through XNNPACK's Arm int8 (dotprod/i8mm) kernels.

    `-cpu max,sme=off`: with qemu 7.2's SME enabled, XNNPACK picks SME kernels whose results differ from x86 and from
    the NEON/i8mm path by ~1e-2 relative per DiT call (seen with this toy model; see android_demo/README.md).
    """
    qemu = qemu_aarch64_command()
    assert qemu is not None, "qemu-aarch64 not found; install it with `apt-get install qemu-user`"
    exe = build_runner(target="linux-aarch64", out_dir=RUNNERS_DIR / "linux-aarch64", log=lambda _: None)
    arm = run_runner([qemu[0], "-cpu", "max,sme=off", *qemu[1:], str(exe)], int8_bundle, tmp_path / "arm.wav", "--seed", "9")
    assert arm.returncode == 0, arm.stderr
    host = run_runner([str(host_runner)], int8_bundle, tmp_path / "host.wav", "--seed", "9")
    assert host.returncode == 0, host.stderr
    assert_rel_close(read_wav(tmp_path / "arm.wav"), read_wav(tmp_path / "host.wav"))


def test_jni_bridge_compiles_against_host_jdk():
    javac = shutil.which("javac")
    assert javac is not None, "a JDK is needed (apt-get install openjdk-17-jdk-headless)"
    jdk_include = Path(javac).resolve().parents[1] / "include"
    et = executorch_sdk_root() / "include"
    cmd = ["c++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-deprecated-declarations",
           f"-I{jdk_include}", f"-I{jdk_include / 'linux'}", f"-I{RUNNER_SOURCE / 'src'}",
           "-isystem", str(et), "-isystem", str(et / "executorch/runtime/core/portable_type/c10"),
           "-DC10_USING_CUSTOM_GENERATED_MACROS", str(JNI_SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_build_runner_explains_missing_android_pieces(tmp_path):
    with pytest.raises(RunnerBuildError, match="--android-ndk"):
        build_runner(target="android-arm64", out_dir=tmp_path / "a", cache_dir=tmp_path / "c")
    with pytest.raises(RunnerBuildError, match="android.toolchain.cmake"):
        build_runner(target="android-arm64", out_dir=tmp_path / "a", android_ndk=tmp_path, cache_dir=tmp_path / "c")
    ndk = tmp_path / "ndk"
    (ndk / "build" / "cmake").mkdir(parents=True)
    (ndk / "build" / "cmake" / "android.toolchain.cmake").write_text("")
    with pytest.raises(RunnerBuildError, match="ExecuTorch Android"):
        build_runner(target="android-arm64", out_dir=tmp_path / "a", android_ndk=ndk, cache_dir=tmp_path / "c")
    with pytest.raises(RunnerBuildError, match="executorch-config.cmake"):
        build_runner(target="android-arm64", out_dir=tmp_path / "a", android_ndk=ndk, executorch_android_dir=tmp_path, cache_dir=tmp_path / "c")
    with pytest.raises(RunnerBuildError, match="unknown target"):
        build_runner(target="ios", out_dir=tmp_path / "a")
