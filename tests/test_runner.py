"""The native runner (android_demo/runner) against a Python reference of the same loop on the same .pte files.

A toy bundle (C=32, T=8, steps=4, hop 2048: audio [1, 2, 16384]) is exported once per session with tiny
XNNPACK-lowered modules; the host runner is built once per session into the pytest cache (warm rebuilds take
seconds); the aarch64 runner is cross-built and run under qemu-aarch64. The JNI bridge is compiled against the
host JDK's jni.h. Also: inputs bound by name/index (reordered manifests), the nearest-sample rule, files that lead
out of the bundle or a symlinked manifest.json, -o, non-finite audio and NaN/inf noise refused, over-long prompts
refused like Python's Tokenizer.fit unless --truncate-prompt, and build-runner leaving no folder behind when it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgegen.bench import int8_dot_product, int8_features
from edgegen.bundle_pipeline import BundlePipeline
from edgegen.common import num_samples
from edgegen.errors import EdgegenError
from edgegen.noise import gaussian_noise
from edgegen.request import GenerateRequest
from edgegen.runner_build import RUNNER_SOURCE, RunnerBuildError, build_runner, executorch_sdk_root, needed_libraries
from edgegen.runtime import call_order
from edgegen.tokenizer import Tokenizer
from tests.helpers import no_sysroot_env, portable_command

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
        "target": {"name": "toy", "description": "", "backend": "executorch", "abi": "x86_64", "threads": 2,
                   "fp16_compute": False, "xnnpack_flags": [], "min_api_level": None},
        "recipe": {"name": "fp32", "description": "", "components": {
            c: {"rules": [{"pattern": "*", "scheme": "fp32", "group_size": 32, "fallback": None, "backend": None}],
                "sqnr_floor_db": None} for c in ("text_encoder", "dit", "decoder")}},
        "source": {"model": "toy"},
        "sample_rate": 44100, "channels": 2, "latent_length": T, "max_seconds": T * HOP / 44100,
        "sampler": {"type": "pingpong", "steps": STEPS, "logsnr_max": -6.0, "logsnr_min": 2.0},
        "tokenizer": {"file": "spiece.model", "max_length": L, "eos_id": 1, "pad_id": 0, "size": (out / "spiece.model").stat().st_size,
                      "sha256": hashlib.sha256((out / "spiece.model").read_bytes()).hexdigest()},
        "artifacts": artifacts,
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
    audio = dec.execute([x])[0].numpy()[0, :, : num_samples(seconds, m["sample_rate"])]  # (2, n)
    return {"token_ids": token_ids, "attention_mask": mask, "cross_attn_cond": cross.numpy(), "global_cond": glob.numpy(),
            "latents": latents, "audio": audio}


def run_runner(cmd_prefix: list[str], bundle: Path, out: Path, *extra: str, prompt: str = PROMPT, seconds: float = SECONDS,
               env: dict | None = None):
    cmd = [*cmd_prefix, "--bundle", str(bundle), "--prompt", prompt, "--seconds", str(seconds), "-o", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd="/", env=env)


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
    assert report["int8_dot_product"] == int8_dot_product(int8_features(Path("/proc/cpuinfo").read_text()))


def test_peak_rss_is_the_runners_own_not_its_parents(host_runner, toy_bundle, tmp_path):
    """peak_rss_mb is the runner's VmHWM: getrusage's ru_maxrss would carry this (larger) test process's peak across
    fork + exec and report it as the runner's."""
    ballast = np.ones(600 * 2**20 // 8)  # 600 MB touched here, before the runner starts
    parent = int(next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines()
                      if ln.startswith("VmHWM:"))) / 1024
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "out.wav")
    assert proc.returncode == 0, proc.stderr
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    assert ballast[-1] == 1.0 and parent > 600
    assert 0 < peak < 300 < parent, (peak, parent)


def test_seed_uses_portable_noise(host_runner, toy_bundle, tmp_path):
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "out.wav", "--seed", "1234", "--dump", str(tmp_path / "dump"))
    assert proc.returncode == 0, proc.stderr
    noise = gaussian_noise(1234, (STEPS, D, T))
    np.testing.assert_array_equal(np.load(tmp_path / "dump" / "noise.npy"), noise)
    assert_rel_close(read_wav(tmp_path / "out.wav"), reference(toy_bundle, PROMPT, SECONDS, noise)["audio"])


def test_host_runner_matches_edgegen_bundle_pipeline(host_runner, int8_bundle, tmp_path):
    """Same seed through `edgegen run`'s engine (BundlePipeline) and the native runner: same WAV samples."""
    ref = BundlePipeline.open(int8_bundle, threads=2).generate(GenerateRequest(PROMPT, seconds=SECONDS, seed=11))
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
    from edgegen.streaming import frames_to_decode, plan_windows

    bundle, decoder = stream_bundle
    proc = run_runner([str(host_runner)], bundle, tmp_path / "out.wav", "--seed", "7", "--dump", str(tmp_path / "d"),
                      seconds=seconds)
    assert proc.returncode == 0, proc.stderr
    n = num_samples(seconds, 44100)
    with torch.no_grad():
        whole = decoder(torch.from_numpy(np.load(tmp_path / "d" / f"latents_step{STEPS - 1}.npy")))[0, :, :n].numpy()
    got = read_wav(tmp_path / "out.wav")
    assert_rel_close(got, whole)
    assert_rel_close(got, BundlePipeline.open(bundle, threads=2).generate(GenerateRequest(PROMPT, seconds=seconds,
                                                                                          seed=7)))
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    frames = frames_to_decode(n, length=T, window=WINDOW, overlap=OVERLAP, hop=HOP)
    assert report["decoder_calls"] == len(plan_windows(frames, window=WINDOW, overlap=OVERLAP)) == calls
    assert 0 < report["time_to_first_audio_s"] < report["e2e_s"]


def test_tokenizer_empty_and_truncated_prompts(host_runner, toy_bundle, tmp_path):
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "a.wav", "--dump", str(tmp_path / "a"), prompt="")
    assert proc.returncode == 0, proc.stderr
    ids = np.load(tmp_path / "a" / "token_ids.npy")
    assert ids[0, 0] == 1 and not ids[0, 1:].any() and np.load(tmp_path / "a" / "attention_mask.npy").sum() == 1
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["prompt_tokens"] == 1 and report["prompt_truncated"] is False
    long = "drum loop " * 80
    n = Tokenizer(toy_bundle / "spiece.model", max_length=L).count(long)
    assert n > L
    proc = run_runner([str(host_runner)], toy_bundle, tmp_path / "b.wav", "--truncate-prompt", "--dump", str(tmp_path / "b"), prompt=long)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: warning: ") and f"is {n} tokens" in lines[0], proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["prompt_tokens"] == n and report["prompt_truncated"] is True
    ids = np.load(tmp_path / "b" / "token_ids.npy")
    assert ids[0, L - 1] == 1 and (ids[0, : L - 1] > 2).all() and np.load(tmp_path / "b" / "attention_mask.npy").all()


def _prompt_of(tok, n: int) -> str:
    """A prefix of a long prompt that takes exactly `n` tokens (EOS included)."""
    long = "drum loop " * 80
    return next(long[:k] for k in range(len(long) + 1) if tok.count(long[:k]) == n)


@pytest.mark.parametrize("tokens", [L, L + 1, 3 * L])
def test_over_long_prompt_is_refused_like_python(host_runner, toy_bundle, tmp_path, tokens):
    """Python's rule (edgegen.tokenizer.Tokenizer.fit): up to max_length tokens (EOS included) run untouched; one more
    is refused, before any model is loaded, with Python's own message, exit 2 and nothing written, unless
    --truncate-prompt accepts the cut."""
    tok = Tokenizer(toy_bundle / "spiece.model", max_length=L)
    prompt = _prompt_of(tok, tokens)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_runner([str(host_runner)], toy_bundle, out / "x.wav", "--seed", "2", "--dump", str(out / "d"), prompt=prompt)
    if tokens <= L:
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report["prompt_tokens"] == tokens and report["prompt_truncated"] is False
        return
    with pytest.raises(EdgegenError) as python:
        tok.fit(prompt, truncate=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"edgegen-runner: error: {python.value}\n"
    assert list(out.iterdir()) == []
    proc = run_runner([str(host_runner)], toy_bundle, out / "x.wav", "--seed", "2", "--truncate-prompt", prompt=prompt)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["prompt_truncated"] is True


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


def _index_inputs(m: dict) -> None:
    """What export writes now: each input's position in the artifact's call as `index`."""
    for art in m["artifacts"].values():
        for k, spec in enumerate(art["inputs"]):
            spec["index"] = k


def _shuffle_inputs(m: dict, *, index: bool = True) -> None:
    """Lists every artifact's inputs in another order (with `index`, so the call order is still known)."""
    if index:
        _index_inputs(m)
    for art in m["artifacts"].values():
        art["inputs"] = art["inputs"][1:] + art["inputs"][:1]  # token_ids, attention_mask, seconds_total -> mask first


def _outside_copy(b: Path, name: str) -> Path:
    """An identical copy of bundle file `name` outside the bundle: same bytes, same sha256, so only the path rule
    can refuse it."""
    other = b.parent / "other"
    other.mkdir(exist_ok=True)
    shutil.copy(b / name, other / name)
    return other / name


def _point_file(b: Path, key: tuple[str, ...], value: str) -> None:
    def edit(m):
        node = m
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
    _edit_manifest(b, edit)


def _symlink_out(b: Path, name: str) -> None:
    target = _outside_copy(b, name)
    (b / name).unlink()
    (b / name).symlink_to(target)


BAD_BUNDLES = {
    "invalid_json": lambda b: (b / "manifest.json").write_text("{\"schema_version\": 1,"),
    "schema_version": lambda b: _edit_manifest(b, lambda m: m.update(schema_version=3)),
    "v2_without_stream": lambda b: _edit_manifest(b, lambda m: m.update(schema_version=2)),
    "stream_in_v1": lambda b: _edit_manifest(b, lambda m: m.update(decoder_stream={"window": 4, "overlap": 1, "hop": HOP})),
    "stream_window_mismatch": lambda b: _edit_manifest(b, lambda m: m.update(
        schema_version=2, decoder_stream={"window": 6, "overlap": 1, "hop": HOP})),
    "backend": lambda b: _edit_manifest(b, lambda m: m.update(backend="coreml")),
    "backend_not_its_files": lambda b: _edit_manifest(b, lambda m: m.update(backend="litert")),  # .pte files
    "missing_key": lambda b: _edit_manifest(b, lambda m: m["sampler"].pop("steps")),
    "missing_pte": lambda b: (b / "dit.pte").unlink(),
    "missing_tokenizer": lambda b: (b / "spiece.model").unlink(),
    "tokenizer_sha": lambda b: (b / "spiece.model").write_bytes(bytes(reversed((b / "spiece.model").read_bytes()))),
    "sha_mismatch": lambda b: (b / "decoder.pte").write_bytes(bytes(reversed((b / "decoder.pte").read_bytes()))),
    "size_mismatch": lambda b: (b / "dit.pte").write_bytes((b / "dit.pte").read_bytes() + b"\0"),
    "wrong_dtype": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["dit"]["inputs"][1].update(dtype="int32")),
    "meta_mismatch": lambda b: _edit_manifest(b, lambda m: _retile(m, 16)),
    # binding by name (issue 11.8): the indices must number the inputs, and the names must be the contract's
    "index_partial": lambda b: _edit_manifest(b, lambda m: (_index_inputs(m), m["artifacts"]["dit"]["inputs"][2].pop("index"))),
    "index_duplicate": lambda b: _edit_manifest(b, lambda m: (_index_inputs(m), m["artifacts"]["dit"]["inputs"][2].update(index=0))),
    "index_out_of_range": lambda b: _edit_manifest(b, lambda m: (_index_inputs(m), m["artifacts"]["text_encoder"]["inputs"][2].update(index=3))),
    "reordered_without_index": lambda b: _edit_manifest(b, lambda m: _shuffle_inputs(m, index=False)),
    "input_renamed": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["dit"]["inputs"][1].update(name="time")),
    "input_name_repeated": lambda b: _edit_manifest(b, lambda m: m["artifacts"]["dit"]["inputs"][1].update(name="x")),
    # manifest paths must stay inside the bundle (issue 17.2); the outside copies are byte-identical
    "artifact_dotdot": lambda b: (_outside_copy(b, "dit.pte"), _point_file(b, ("artifacts", "dit", "file"), "../other/dit.pte")),
    "artifact_absolute": lambda b: _point_file(b, ("artifacts", "decoder", "file"), str(_outside_copy(b, "decoder.pte"))),
    "artifact_symlink_out": lambda b: _symlink_out(b, "text_encoder.pte"),
    "tokenizer_dotdot": lambda b: (_outside_copy(b, "spiece.model"), _point_file(b, ("tokenizer", "file"), "../other/spiece.model")),
    "tokenizer_symlink_out": lambda b: _symlink_out(b, "spiece.model"),
    # manifest.json itself may not be a symlink, even to a file inside the bundle (edgegen.bundle refuses it too)
    "manifest_symlink": lambda b: ((b / "manifest.json").rename(b / "real.json"), (b / "manifest.json").symlink_to("real.json")),
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


@pytest.mark.parametrize("case", ["noise_shape", "noise_dtype", "noise_missing", "noise_nan", "noise_inf", "seconds_too_long",
                                  "seconds_zero", "seconds_below_one_sample", "seconds_nan", "seconds_past_max", "unknown_flag"])
def test_bad_arguments_are_rejected(host_runner, toy_bundle, tmp_path, case):
    noise = tmp_path / "noise.npy"
    np.save(noise, np.zeros((STEPS, D, T + 1), np.float32) if case == "noise_shape" else np.zeros((STEPS, D, T), np.float64))
    if case in ("noise_nan", "noise_inf"):  # refused when read, like edgegen.audio_io.read_noise
        bad = gaussian_noise(0, (STEPS, D, T))
        bad[STEPS - 1, 7, T - 1] = np.nan if case == "noise_nan" else -np.inf
        np.save(noise, bad)
    extra = {"noise_shape": ["--noise", str(noise)], "noise_dtype": ["--noise", str(noise)], "noise_nan": ["--noise", str(noise)],
             "noise_inf": ["--noise", str(noise)], "noise_missing": ["--noise", str(tmp_path / "nope.npy")],
             "unknown_flag": ["--steps", "3"]}.get(case, [])
    # 1e-5 s is 0.44 samples (rounds to none); past_max is one sample beyond max_seconds (T * HOP samples)
    seconds = {"seconds_too_long": 5.0, "seconds_zero": 0.0, "seconds_below_one_sample": 1e-5, "seconds_nan": float("nan"),
               "seconds_past_max": (T * HOP + 1) / 44100}.get(case, SECONDS)
    out = tmp_path / "out" / "x.wav"
    out.parent.mkdir()
    proc = run_runner([str(host_runner)], toy_bundle, out, *extra, seconds=seconds)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: "), proc.stderr
    if case in ("noise_nan", "noise_inf"):
        assert f"--noise {noise} holds 1 non-finite value(s)" in lines[0], proc.stderr
    assert list(out.parent.iterdir()) == []


def _swap_same_shape(m: dict) -> None:
    """token_ids and attention_mask (both int32 [1, L]) listed the other way round: only their names and indices
    tell them apart, the .pte's MethodMeta cannot."""
    _index_inputs(m)
    ins = m["artifacts"]["text_encoder"]["inputs"]
    ins[0], ins[1] = ins[1], ins[0]


@pytest.mark.parametrize("reorder", [_shuffle_inputs, _swap_same_shape], ids=["rotated", "same_shape_swapped"])
def test_inputs_bind_by_name_whatever_the_manifest_order(host_runner, toy_bundle, tmp_path, reorder):
    """Issue 11.8: a manifest listing the inputs in another order (each with its call `index`, as export writes it)
    runs the same, bit for bit, in the native runner and in edgegen's own runtime (BundlePipeline)."""
    bundle = tmp_path / "reordered"
    shutil.copytree(toy_bundle, bundle)
    _edit_manifest(bundle, reorder)
    listed = json.loads((bundle / "manifest.json").read_text())["artifacts"]["text_encoder"]["inputs"]
    assert [i["name"] for i in listed][0] == "attention_mask"  # the edit really moved something
    noise = np.random.default_rng(3).standard_normal((STEPS, D, T)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    runs = {}
    for name, b in (("original", toy_bundle), ("reordered", bundle)):
        proc = run_runner([str(host_runner)], b, tmp_path / f"{name}.wav", "--noise", str(tmp_path / "noise.npy"),
                          "--dump", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        runs[name] = (tmp_path / f"{name}.wav").read_bytes()
        for dump in ("token_ids", "cross_attn_cond", "global_cond", f"latents_step{STEPS - 1}"):
            np.testing.assert_array_equal(np.load(tmp_path / name / f"{dump}.npy"), np.load(tmp_path / "original" / f"{dump}.npy"))
    assert runs["reordered"] == runs["original"]
    py = [BundlePipeline.open(b, threads=2).generate(GenerateRequest(PROMPT, seconds=SECONDS,
                                                                     noise=noise)) for b in (toy_bundle, bundle)]
    np.testing.assert_array_equal(py[1], py[0])
    assert_rel_close(read_wav(tmp_path / "reordered.wav"), py[1])


def test_call_order_rule_in_python(tiny):
    """The rule edgegen/runtime.py shares with bundle.cpp: `index` when given (io_spec writes it), else list order."""
    from dataclasses import replace

    from edgegen.export.wrappers import io_spec
    from edgegen.manifest import TensorSpec

    ins = [TensorSpec.from_json(i) for i in io_spec(tiny, "dit")["inputs"]]
    assert [i.index for i in ins] == [0, 1, 2, 3]
    assert [i.name for i in call_order(ins[::-1])] == ["x", "t", "cross_attn_cond", "global_cond"]
    legacy = [replace(i, index=None) for i in ins[::-1]]
    assert [i.name for i in call_order(legacy)] == ["global_cond", "cross_attn_cond", "t", "x"]
    for bad in ([ins[0], replace(ins[1], index=None)], [ins[0], replace(ins[1], index=0)],
                [ins[0], replace(ins[1], index=2)], [ins[0], replace(ins[1], index=1.0)]):
        with pytest.raises(EdgegenError, match="index"):
            call_order(bad)


T_LONG = 52  # 52 * 2048 samples: 2.41 s


@pytest.fixture(scope="session")
def long_bundle(toy_bundle, tmp_path_factory) -> Path:
    """The toy bundle with T_LONG latent frames (2.41 s), for durations past the toy's 0.37 s."""
    out = tmp_path_factory.mktemp("long_bundle") / "bundle"
    shutil.copytree(toy_bundle, out)
    torch.manual_seed(2)
    files = {"dit": _lower(ToyDiT(), (torch.randn(1, D, T_LONG), torch.ones(1), torch.randn(1, L + 1, C), torch.randn(1, C))),
             "decoder": _lower(ToyDecoder(), (torch.randn(1, D, T_LONG),))}
    for name, data in files.items():
        (out / f"{name}.pte").write_bytes(data)

    def edit(m):
        _retile(m, T_LONG)
        m["max_seconds"] = T_LONG * HOP / 44100
        for name, data in files.items():
            m["artifacts"][name].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    _edit_manifest(out, edit)
    return out


@pytest.mark.parametrize("bundle_name, seconds, frames", [
    ("toy", 0.35, 15435),              # 15434.999999999998 samples: truncation gave 15434
    ("toy", 0.30002, 13231),           # 13230.882
    ("toy", T * HOP / 44100, T * HOP),  # the maximum: every sample the decoder makes
    ("toy", 2.5 / 44100, 2),           # exactly 2.5 samples: ties go to even, like Python's round()
    ("long", 0.7, 30870),              # 30869.999999999996
    ("long", 1.1, 48510),              # 48510.00000000001
    ("long", 2.3, 101430),             # 101429.99999999999
])
def test_seconds_give_the_nearest_sample(host_runner, toy_bundle, long_bundle, tmp_path, bundle_name, seconds, frames):
    """Issue 11.2: one rule everywhere, the nearest sample (edgegen.common.num_samples); the runner's WAV, its report
    and `edgegen run`'s engine agree."""
    bundle = {"toy": toy_bundle, "long": long_bundle}[bundle_name]
    assert num_samples(seconds, 44100) == frames
    proc = run_runner([str(host_runner)], bundle, tmp_path / "out.wav", "--seed", "4", seconds=seconds)
    assert proc.returncode == 0, proc.stderr
    assert read_wav(tmp_path / "out.wav").shape == (2, frames)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["frames"] == frames
    assert BundlePipeline.open(bundle, threads=2).generate(GenerateRequest(PROMPT, seconds=seconds,
                                                                           seed=4)).shape == (2, frames)


@pytest.mark.parametrize("value", [3e38, -3e38])
def test_non_finite_audio_is_an_error_not_a_file(host_runner, toy_bundle, tmp_path, value):
    """Issue 17.6: finite noise so large that the audio overflows to inf / NaN: one error line, exit 1, no WAV and no
    dumps. (NaN or inf in the noise itself is refused up front: test_bad_arguments_are_rejected.)"""
    noise = np.full((STEPS, D, T), value, np.float32)
    assert np.isfinite(noise).all()
    np.save(tmp_path / "noise.npy", noise)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_runner([str(host_runner)], toy_bundle, out / "x.wav", "--noise", str(tmp_path / "noise.npy"), "--dump", str(out / "d"))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: ") and "non-finite" in lines[0], proc.stderr
    assert list(out.iterdir()) == []


# Not /dev/null: should the check regress, a root test run would rename a WAV over the system's /dev/null.
@pytest.mark.parametrize("case", ["fifo", "directory", "is_the_noise", "is_a_bundle_file", "no_such_folder"])
def test_output_must_be_a_new_or_regular_file_and_no_input(host_runner, toy_bundle, tmp_path, case):
    """Issue 17.6: -o is written via a temporary file and a rename, so it must be a regular file (or not exist yet), in
    a folder that exists, and not one of the inputs; anything else is refused before any work, touching nothing."""
    bundle = tmp_path / "bundle"
    shutil.copytree(toy_bundle, bundle)
    noise = tmp_path / "noise.npy"
    np.save(noise, gaussian_noise(0, (STEPS, D, T)))
    out = {"fifo": tmp_path / "fifo.wav", "directory": tmp_path / "dir.wav", "is_the_noise": noise, "is_a_bundle_file": bundle / "dit.pte", "no_such_folder": tmp_path / "nope" / "x.wav"}[case]
    if case == "fifo":
        os.mkfifo(out)
    if case == "directory":
        out.mkdir()
    before = {p: p.read_bytes() for p in [noise, *bundle.iterdir()]}
    listing = sorted(tmp_path.rglob("*"))
    proc = run_runner([str(host_runner)], bundle, out, "--noise", str(noise))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: -o "), proc.stderr
    assert sorted(tmp_path.rglob("*")) == listing and {p: p.read_bytes() for p in before} == before


def test_paths_inside_the_bundle_are_fine(host_runner, toy_bundle, tmp_path):
    """The path rule refuses only what leads out: symlinks between files of the bundle (an artifact and the
    tokenizer) and a bundle folder reached through a symlink all run."""
    real = tmp_path / "real"
    shutil.copytree(toy_bundle, real)
    (real / "models").mkdir()
    (real / "dit.pte").rename(real / "models" / "dit.pte")
    (real / "dit.pte").symlink_to("models/dit.pte")
    (real / "spiece.model").rename(real / "models" / "spiece.model")
    (real / "spiece.model").symlink_to(real / "models" / "spiece.model")  # absolute, still inside
    (tmp_path / "link").symlink_to(real)
    proc = run_runner([str(host_runner)], tmp_path / "link", tmp_path / "out.wav", "--seed", "1")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.aarch64
def test_portable_runner_is_self_contained(portable_runner):
    """bin/edgegen-runner is aarch64; lib/ holds the loader and every library any of them needs (DT_NEEDED, closed),
    each a real file, plus libLiteRt.so; the launcher is POSIX sh."""
    exe = portable_runner / "bin" / "edgegen-runner"
    header = exe.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # e_machine EM_AARCH64
    lib = portable_runner / "lib"
    have = {p.name for p in lib.iterdir()}
    assert {"ld-linux-aarch64.so.1", "libc.so.6", "libstdc++.so.6", "libLiteRt.so", "libexecutorch.so"} <= have
    assert not [p for p in lib.iterdir() if p.is_symlink()]
    for path in [exe, *lib.iterdir()]:
        assert set(needed_libraries(path)) <= have, path
    launcher = (portable_runner / "edgegen-runner").read_text()
    assert launcher.startswith("#!/bin/sh\n") and "--library-path" in launcher
    assert subprocess.run(["sh", "-n", str(portable_runner / "edgegen-runner")]).returncode == 0


@pytest.mark.aarch64
def test_portable_runner_under_qemu_matches_host(host_runner, portable_runner, toy_bundle, tmp_path):
    """ExecuTorch fp32 through the portable folder's own loader and libraries, no host sysroot."""
    noise = np.random.default_rng(1).standard_normal((STEPS, D, T)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    args = ["--noise", str(tmp_path / "noise.npy"), "--threads", "2"]
    arm = run_runner(portable_command(portable_runner), toy_bundle, tmp_path / "arm.wav", *args, "--dump", str(tmp_path / "arm"),
                     env=no_sysroot_env())
    assert arm.returncode == 0, arm.stderr
    host = run_runner([str(host_runner)], toy_bundle, tmp_path / "host.wav", *args)
    assert host.returncode == 0, host.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "arm" / "token_ids.npy"), reference(toy_bundle, PROMPT, SECONDS, noise)["token_ids"])
    assert_rel_close(read_wav(tmp_path / "arm.wav"), read_wav(tmp_path / "host.wav"))
    assert json.loads(arm.stdout.strip().splitlines()[-1])["runner"] == "native"


@pytest.mark.aarch64
def test_portable_int8_dit_under_qemu_matches_host(host_runner, portable_runner, int8_bundle, tmp_path):
    """int8 dynamic-quant DiT through XNNPACK's Arm int8 (dotprod/i8mm) kernels.

    `-cpu max,sme=off`: with qemu 7.2's SME enabled, XNNPACK picks SME kernels whose results differ from x86 and from
    the NEON/i8mm path by ~1e-2 relative per DiT call (seen with this toy model; see android_demo/README.md).
    """
    arm = run_runner(portable_command(portable_runner, cpu="max,sme=off"), int8_bundle, tmp_path / "arm.wav", "--seed", "9",
                     env=no_sysroot_env())
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


@pytest.mark.parametrize("existing", [False, True])
def test_build_runner_leaves_no_folder_behind_on_failure(tmp_path, monkeypatch, existing):
    """Issue 17.5: a failed build removes the -o folder (and parents) it created, early error or not, through the
    CLI too; a folder that was there before stays."""
    from click.testing import CliRunner

    from edgegen import runner_build
    from edgegen.cli import main

    out = tmp_path / "new" / "runner"
    if existing:
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("mine")
    res = CliRunner().invoke(main, ["build-runner", "--target", "android-arm64", "--android-ndk", str(tmp_path / "no-ndk"),
                                    "-o", str(out)])
    assert res.exit_code != 0 and "android.toolchain.cmake" in res.output
    with pytest.raises(RunnerBuildError, match="--android-ndk"):
        build_runner(target="android-arm64", out_dir=out, cache_dir=tmp_path / "c")

    def broken_configure(source, build, args, log):  # a failure after the folder was made
        assert out.is_dir()
        raise RunnerBuildError("cmake failed")

    monkeypatch.setattr(runner_build, "_configure", broken_configure)
    monkeypatch.setattr(runner_build, "_system_sentencepiece", lambda: True)  # never build SentencePiece here
    with pytest.raises(RunnerBuildError, match="cmake failed"):
        build_runner(target="host", out_dir=out, cache_dir=tmp_path / "c", log=lambda _: None)
    if existing:
        assert (out / "keep.txt").read_text() == "mine"
    else:
        assert not (tmp_path / "new").exists()


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
