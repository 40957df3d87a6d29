"""`edgegen train vae` on tiny slices: a 4-channel VAE of the SAO family on a few short clips written here.

Loss falls over 20 steps, a resumed run repeats the straight one exactly, the written model loads through the
strict loader with the new VAE, and bad input (a VAE outside the family, an empty split, NaN) is one error line
that leaves nothing behind. The shared loop's NaN stop is checked on `train rf` too."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import edgegen
from edgegen.errors import EdgegenError
from edgegen.train import loop, vae
from edgegen.train.vae import VAEConfig, train_vae
from tests.helpers import assert_one_error, invoke_cli
from tests.test_bad_input_train import fake_cache
from tests.test_train import one_thread  # noqa: F401  (autouse, module scope: tiny models run fastest on one thread)

TINY_VAE = dict(channels=4, crop=4096, batch_size=2)
TINY_CLI = ["--channels", "4", "--crop", "4096", "--batch-size", "2"]
VAE = ["train", "vae", "-m", "random:tiny"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """captions.jsonl + three 0.2 s stereo clips at 44.1 kHz (decaying tones over a little noise)."""
    root = tmp_path_factory.mktemp("vae_clips")
    rng = np.random.default_rng(0)
    t = np.arange(8820) / 44100
    lines = []
    for i, f in enumerate((220.0, 440.0, 1320.0)):
        x = 0.4 * np.sin(2 * np.pi * f * t) * np.exp(-4 * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(str(root / f"c{i}.wav"), np.stack([x, 0.6 * x], 1).astype(np.float32), 44100)
        lines.append(json.dumps({"path": f"c{i}.wav", "caption": f"tone {i}"}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root / "captions.jsonl"


def test_loss_falls_and_the_model_loads_with_the_new_vae(clips, tmp_path):
    records = []
    cfg = VAEConfig(**TINY_VAE, lr=1e-3, warmup=0.0)
    model = train_vae(model="random:tiny", t5=None, captions=clips, out=tmp_path / "run", cfg=cfg, steps=20,
                      log_every=1, log=records.append)
    losses = [r["loss"] for r in records]
    assert len(losses) == 20 and np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    assert records[-1]["progress"] == "20/20" and "eta" in records[-1]
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert list(logged[0]) == ["step", "loss", "stft", "l1", "kl", "grad_norm", "lr", "sec"]
    raw = json.loads((model / "model_config.json").read_text())
    ae = raw["model"]["pretransform"]["config"]
    assert ae["decoder"]["config"]["channels"] == 4 and ae["encoder"]["config"]["latent_dim"] == 128
    assert ae["decoder"]["config"]["strides"] == [2, 4, 4, 8, 8] and "scale" not in raw["model"]["pretransform"]
    pipe = edgegen.load_pipeline(model, t5=tmp_path / "run" / "t5")  # the strict loader: every key present
    trained = vae.Autoencoder(cfg.oobleck())
    trained.load_state_dict(loop.load_state(tmp_path / "run")["vae"])
    for part in ("encoder", "decoder"):
        got = getattr(pipe, part).state_dict()
        assert all(torch.allclose(got[k], v, atol=1e-6) for k, v in trained.plain_state(part).items()), part
    base = edgegen.load_pipeline("random:tiny")
    assert all(torch.equal(v, base.dit.state_dict()[k]) for k, v in pipe.dit.state_dict().items())
    audio = torch.from_numpy(sf.read(str(clips.parent / "c0.wav"), dtype="float32")[0].T[None, :, :8192].copy())
    assert pipe.encode_audio(audio).shape == (1, 64, 4)  # 64-channel latents, hop 2048


def test_resume_repeats_the_straight_run(clips, tmp_path):
    cfg = VAEConfig(**TINY_VAE)
    train_vae(model="random:tiny", t5=None, captions=clips, out=tmp_path / "a", cfg=cfg, steps=4, log_every=1)
    res = invoke_cli(*VAE, "--captions", clips, "--out", tmp_path / "b", "--steps", 2, *TINY_CLI)
    assert res.exit_code == 0, res.output
    assert_one_error(invoke_cli(*VAE, "--captions", clips, "--out", tmp_path / "b", "--steps", 4, *TINY_CLI,
                                "--lr", "1e-3", "--resume"), "different settings", "lr")
    res = invoke_cli(*VAE, "--captions", clips, "--out", tmp_path / "b", "--steps", 4, *TINY_CLI, "--resume")
    assert res.exit_code == 0, res.output
    a, b = (loop.load_state(tmp_path / d) for d in "ab")
    assert a["step"] == b["step"] == 4 and a["config"] == b["config"]
    assert all(torch.equal(a["vae"][k], b["vae"][k]) for k in a["vae"])
    assert a["opt"]["state"][0]["step"] == b["opt"]["state"][0]["step"] == 4
    for k, v in a["opt"]["state"][0].items():
        assert torch.equal(v, b["opt"]["state"][0][k]), k
    logs = {d: [json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in "ab"}
    assert [r["step"] for r in logs["b"]] == [2, 4]  # each call logs its last step: the mean since its last record
    for k in ("loss", "stft", "l1", "kl"):
        assert logs["b"][1][k] == pytest.approx((logs["a"][2][k] + logs["a"][3][k]) / 2, abs=2e-6), k


@pytest.mark.parametrize("args, needles", [
    (["--strides", "2,4,4,8"], ["strides [2, 4, 4, 8]", "hop 256", "outside the SAO-small family", "2048"]),
    (["--strides", "2,4,x"], ["--strides 2,4,x", "integers >= 1"]),
    (["--channels", "2000"], ["channels 2000", "[1, 1024]"]),
    (["--crop", "5000"], ["crop 5000", "multiple of the VAE hop 2048", "4096"]),
    (["--crop", "1024"], ["crop 1024", ">= 2048"]),
])
def test_bad_vae_config_one_line_nothing_created(clips, tmp_path, args, needles):
    out = tmp_path / "runs" / "vae"
    assert_one_error(invoke_cli(*VAE, "--captions", clips, "--out", out, "--steps", 1, *args), *needles)
    assert not (tmp_path / "runs").exists()


def test_vae_config_check_names_the_family():
    with pytest.raises(EdgegenError, match="64-channel latents"):
        VAEConfig(latent_dim=32).check()
    with pytest.raises(EdgegenError, match="one length"):
        VAEConfig(c_mults=(1, 2)).check()


def test_empty_split_is_one_line(tmp_path):
    sf.write(str(tmp_path / "quiet.wav"), np.zeros((8820, 2), np.float32), 44100)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    (tmp_path / "caps.jsonl").write_text('{"path": "quiet.wav", "caption": "x"}\n'
                                         '{"path": "broken.wav", "caption": "y"}\n')
    (tmp_path / "none.jsonl").write_text("\n")
    out = tmp_path / "new" / "run"
    assert_one_error(invoke_cli(*VAE, "--captions", tmp_path / "caps.jsonl", "--out", out, "--steps", 1),
                     "no usable audio among its 2 records", "quiet.wav: silent")
    assert_one_error(invoke_cli(*VAE, "--captions", tmp_path / "none.jsonl", "--out", out, "--steps", 1),
                     "no records")
    assert not (tmp_path / "new").exists()


def test_nan_stops_the_run_in_one_line(clips, tmp_path, monkeypatch):
    real, calls = vae.vae_losses, []

    def nan_at_step_3(x_hat, x, kl, cfg):
        calls.append(1)
        out = real(x_hat, x, kl, cfg)
        return {**out, "loss": out["loss"] * float("nan")} if len(calls) >= 3 else out

    monkeypatch.setattr(vae, "vae_losses", nan_at_step_3)
    out = tmp_path / "run"
    assert_one_error(invoke_cli(*VAE, "--captions", clips, "--out", out, "--steps", 5, *TINY_CLI, "--save-every", 2),
                     "diverged at step 3", "loss nan", "state.safetensors")
    state = loop.load_state(out)
    assert state["step"] == 2 and not (out / "model").exists()  # the last good state stays, nothing half-written
    assert all(torch.isfinite(v).all() for v in state["vae"].values())
    calls.clear()  # from its third step on: before the first save (every 500)
    assert_one_error(invoke_cli(*VAE, "--captions", clips, "--out", tmp_path / "fresh", "--steps", 5, *TINY_CLI),
                     "diverged at step 3", "no state was saved")
    assert not (tmp_path / "fresh").exists()


def test_nan_stops_rf_too(tmp_path, monkeypatch):
    import edgegen.train.rf as rf

    monkeypatch.setattr(rf, "rf_step", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    cache = fake_cache(tmp_path / "c.safetensors")
    assert_one_error(invoke_cli("train", "rf", "-m", "random:tiny", "--batch-size", 2, "--cache", cache,
                                "--out", tmp_path / "r", "--steps", 2), "diverged at step 1", "loss nan")
    assert not (tmp_path / "r").exists()


def test_clock_time():
    assert [loop.clock_time(s) for s in (4.4, 65, 7260)] == ["4s", "1m05s", "2h01m"]
