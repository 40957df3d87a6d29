"""edgegen.train: losses on hand-made tensors, one optimisation step, resume, checkpoints, data, DDP smoke."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import edgegen
from edgegen.errors import EdgegenError
from edgegen.request import GenerateRequest
from edgegen.train import arc, loop
from edgegen.cli import main
from edgegen.train.data import LatentData, build_cache, read_captions, write_synthetic
from edgegen.train.rf import RFConfig, rf_loss, train_rf

SMALL_ARC = dict(head_channels=8, batch_size=4, lr_generator=1e-3, lr_discriminator=3e-3, disc_warmup_steps=2,
                 disc_warmup_max_loss=None)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models run fastest on one thread; two spin-wait badly when the machine is busy (15 s vs 100 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tiny, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    caps = write_synthetic(root / "audio", count=8, sample_rate=tiny.sample_rate, seconds=tiny.max_seconds)
    build_cache(pipe=tiny, records=read_captions(caps), root=caps.parent, out=root / "cache.safetensors")
    return root / "cache.safetensors"


# --- losses ----------------------------------------------------------------------------------------------

def test_relativistic_losses_signs_by_hand():
    real, fake = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert arc.generator_loss(real, fake).item() == pytest.approx((sp(2) + sp(0)) / 2, abs=1e-6)
    assert arc.discriminator_loss(real, fake).item() == pytest.approx((sp(-2) + sp(0)) / 2, abs=1e-6)
    # D that scores real above fake is rewarded, G is penalised for it; a tie costs both log 2
    assert arc.discriminator_loss(real, fake) < math.log(2) < arc.generator_loss(real, fake)
    assert arc.contrastive_loss(torch.tensor([3.0]), torch.tensor([1.0])).item() == pytest.approx(sp(-2), abs=1e-6)
    assert arc.approx_penalty(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 0.0]])).item() == pytest.approx(4.25)


def test_roll_prompts_is_a_derangement_and_copies():
    B, L, C = 3, 4, 2
    cross = torch.arange(B * L * C, dtype=torch.float32).view(B, L, C)
    before = cross.clone()
    rolled = arc.roll_prompts(cross)
    for i in range(B):
        assert torch.equal(rolled[i, :-1], cross[(i + 1) % B, :-1])  # prompt of the next item
        assert torch.equal(rolled[i, -1], cross[i, -1])              # own seconds token
    assert torch.equal(cross, before)
    two = arc.roll_prompts(cross[:2])  # upstream's in-place roll left item 1 with its own prompt at B = 2
    assert not torch.equal(two[1, :-1], cross[1, :-1]) and torch.equal(two[1, :-1], cross[0, :-1])


def test_rf_loss_by_hand():
    x0, eps = torch.full((1, 2, 3), 2.0), torch.full((1, 2, 3), -1.0)
    seen = {}

    def dit(xt, t, cross, glob):
        seen["xt"] = xt
        return torch.zeros_like(xt)

    loss = rf_loss(dit, x0, None, None, t=torch.tensor([0.25]), eps=eps)
    assert torch.allclose(seen["xt"], torch.full((1, 2, 3), 0.75 * 2 - 0.25))
    assert loss.item() == pytest.approx(9.0)  # (eps - x0)^2 = 9


def test_noise_level_ranges():
    g = torch.Generator().manual_seed(0)
    cfg = arc.ARCConfig()
    t = arc.sample_t(4096, cfg, g, torch.device("cpu"))
    assert t.min() >= 1 / (1 + math.exp(2)) - 1e-6 and t.max() <= 1 / (1 + math.exp(-6)) + 1e-6
    s = arc.sample_s(4096, cfg, g, torch.device("cpu"))
    assert abs(s.median().item() - 0.5) < 0.02


def test_pairs_share_noise_and_level():
    """With an oracle generator (x0_hat == x0) real and fake are identical: same s, same noise."""
    x0 = torch.randn(3, 4, 5)
    oracle = lambda xt, t, c, g: (xt - x0) / t[:, None, None]  # noqa: E731  v = (x_t - x0) / t
    real, fake, s, _ = arc._pair(oracle, x0, None, None, arc.ARCConfig(), torch.Generator().manual_seed(0), "cpu")
    assert torch.allclose(real, fake, atol=1e-5) and s.shape == (3,)


def test_chain_input_runs_the_samplers_own_chain_without_gradients():
    """Self-forcing: the fake's input is G's own ping-pong state at an inner level of a 4- or 8-step chain, reached
    without gradients; with no chain_steps nothing is drawn (plain ARC runs are unchanged)."""
    from edgegen.sampler import schedule

    target = torch.full((2, 3, 5), 0.7)
    w = torch.ones((), requires_grad=True)
    calls = []

    def G(x, t, c, g):  # predicts x0 = target: v = (x - target) / t
        calls.append((float(t[0]), torch.is_grad_enabled()))
        return w * (x - target) / t[:, None, None]

    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    assert arc.chain_input(G, target.shape, None, None, arc.ARCConfig(), g, "cpu") is None
    assert torch.equal(g.get_state(), before) and not calls
    cfg = arc.ARCConfig(chain_steps=(4, 8), chain_fraction=1.0)
    levels = set()
    for seed in range(40):
        calls.clear()
        x, t = arc.chain_input(G, target.shape, None, None, cfg, torch.Generator().manual_seed(seed), "cpu")
        k, tk = len(calls), float(t[0, 0, 0])
        n = next(n for n in (4, 8) if k < n and abs(float(schedule(n)[k]) - tk) < 1e-6)
        ts = [float(v) for v in schedule(n)]
        assert 1 <= k and [c[0] for c in calls] == pytest.approx(ts[:k]) and not any(c[1] for c in calls)
        assert float(t[0, 0, 0]) == pytest.approx(ts[k]) and t.shape == (2, 1, 1) and not x.requires_grad
        # the state is the sampler's: (1 - t_k) x0_hat + t_k noise, x0_hat = target
        assert float((x - (1 - t[0]) * target).std() / t[0, 0, 0]) == pytest.approx(1.0, abs=0.5)
        levels.add(round(float(t[0, 0, 0]), 5))
    inner = {round(float(v), 5) for n in (4, 8) for v in schedule(n)[1:-1]}
    assert levels <= inner and len(levels) >= 6
    half = arc.ARCConfig(chain_steps=(8,), chain_fraction=0.5)
    hits = sum(arc.chain_input(G, target.shape, None, None, half, torch.Generator().manual_seed(s), "cpu")
               is not None for s in range(200))
    assert 70 < hits < 130
    with pytest.raises(EdgegenError, match="chain_steps"):
        arc.ARCConfig(chain_steps=(1,)).check()
    with pytest.raises(EdgegenError, match="chain_fraction"):
        arc.ARCConfig(chain_fraction=1.5).check()


def test_hidden_layer_default_scales_with_depth():
    assert arc.hidden_layer(arc.ARCConfig(), 16) == 12  # upstream: blocks 0..12 of 16
    assert arc.hidden_layer(arc.ARCConfig(), 4) == 2    # the same share: 3 of 4 blocks
    assert arc.hidden_layer(arc.ARCConfig(), 2) == 1
    with pytest.raises(EdgegenError, match="outside"):
        arc.hidden_layer(arc.ARCConfig(dit_hidden_layer=5), 4)


# --- one step ----------------------------------------------------------------------------------------------

def test_rf_step_changes_parameters_and_lowers_loss(tiny, cache):
    data = LatentData.load(cache)
    dit = loop.frozen_copy(tiny.dit).train().requires_grad_(True)
    x0, cross, glob = data.batch(torch.arange(4))
    g = torch.Generator().manual_seed(0)
    t, eps = torch.rand(4, generator=g), torch.randn(x0.shape, generator=g)
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in dit.parameters()]
    first = rf_loss(dit, x0, cross, glob, t=t, eps=eps)
    first.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, dit.parameters()))
    assert rf_loss(dit, x0, cross, glob, t=t, eps=eps) < first


def test_discriminator_step_lowers_its_loss(tiny, cache):
    data = LatentData.load(cache)
    cfg = arc.ARCConfig(**SMALL_ARC)
    D = arc.Discriminator(tiny.dit, exit_layer=1, cfg=cfg).train().requires_grad_(True)
    batch = data.batch(torch.arange(4))
    opt = torch.optim.AdamW(D.parameters(), lr=1e-3)

    def loss():
        return arc.arc_losses(tiny.dit, D, batch, cfg, train_generator=False, g=torch.Generator().manual_seed(0),
                              device=torch.device("cpu"))

    first = loss()
    assert set(first) == {"d", "contrastive", "penalty", "total", "d_gap", "r1", "r2"}
    assert first["penalty"].item() == pytest.approx((first["r1"] + first["r2"]).item() / 2, rel=1e-5)
    first["total"].backward()
    opt.step()
    assert loss()["total"] < first["total"]


def test_contrastive_skips_negatives_of_the_same_group():
    keep = arc.rolled_negatives(torch.tensor([0, 0, 1, 2]))  # item i is scored with item i + 1's prompt
    assert keep.tolist() == [False, True, True, True]
    matched, mismatched = torch.zeros(4, 2), torch.tensor([[9.0, 9.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert arc.contrastive_loss(matched, mismatched, keep).item() == pytest.approx(math.log(2), abs=1e-6)
    assert arc.contrastive_loss(matched, mismatched).item() > 2  # upstream: the same-group "negative" counts
    assert arc.contrastive_loss(matched, mismatched, torch.zeros(4, dtype=torch.bool)).item() == 0


def test_schedule_warmup_then_alternation():
    cfg = arc.ARCConfig(disc_warmup_steps=3)
    assert [arc.is_generator_step(s, cfg) for s in range(7)] == [False] * 3 + [True, False, True, False]
    assert [arc.generator_steps(s, cfg) for s in range(3, 8)] == [0, 1, 1, 2, 2]
    assert [arc.is_generator_step(s, arc.ARCConfig(disc_warmup_steps=0)) for s in range(3)] == [True, False, True]


def test_learning_rate_split_betas_and_decay(tiny):
    cfg = arc.ARCConfig(lr_generator=1e-5, lr_discriminator=1e-4, lr_generator_half_life=2)
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt_g, opt_d, sched_g = arc.optimizers(G, D, cfg)
    assert opt_g.param_groups[0]["lr"] == 1e-5 and opt_d.param_groups[0]["lr"] == 1e-4
    assert opt_g.param_groups[0]["betas"] == opt_d.param_groups[0]["betas"] == (0.5, 0.99)
    for _ in range(4):
        opt_g.step()
        sched_g.step()
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2.5e-6) and opt_d.param_groups[0]["lr"] == 1e-4
    assert arc.ARCConfig().lr_discriminator == 10 * arc.ARCConfig().lr_generator


def test_head_init_live_residuals_and_upstream_downsampling():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 16)
    live, zero = arc.ConvNeXtBlock(8), arc.ConvNeXtBlock(8, zero_residual=True)
    assert not torch.allclose(live(x), x, atol=1e-3)  # upstream's zeros_ on a weight-normed conv is a no-op
    assert torch.equal(zero(x), x) and torch.equal(live.down.bias, torch.zeros(8))
    head = arc.ConvNeXtHead(32, channels=8, c_mults=(1, 2, 4), strides=(1, 2, 2), num_blocks=(1, 1, 1))
    downs = [m for m in head.layers if isinstance(m, torch.nn.Conv1d) and m.stride[0] >= 1
             and m.kernel_size[0] in (2, 4)]
    assert [(m.kernel_size[0], m.stride[0], m.padding[0]) for m in downs] == [(2, 1, 1), (4, 2, 1), (4, 2, 1)]
    assert head(torch.randn(2, 32, 17)).shape == (2, 4)  # 17 -> 18 -> 9 -> 4


def test_warmup_trains_only_d_and_checks_it(cache, tmp_path):
    _arc_run(cache, tmp_path / "w", 3, disc_warmup_steps=3)
    state = loop.load_state(tmp_path / "w")
    base = edgegen.load_pipeline("random:tiny").dit.state_dict()
    assert all(torch.equal(state["G"][k], v) for k, v in base.items())  # G untouched during the warm-up
    assert all(torch.equal(state["ema"][k], v) for k, v in base.items())
    assert state["opt_d"]["state"][0]["step"] == 3 and not state["opt_g"]["state"]
    moved = [k for k, v in base.items()
             if f"backbone.{k}" in state["D"] and not torch.equal(state["D"][f"backbone.{k}"], v)]
    assert moved  # D (backbone and head) trained
    logged = [json.loads(line) for line in (tmp_path / "w" / "log.jsonl").read_text().splitlines()]
    assert "warmup_d" in logged[0] and logged[-1]["phase"] == "warmup"
    with pytest.raises(EdgegenError, match="did not learn in its 2 warm-up steps"):
        _arc_run(cache, tmp_path / "x", 3, disc_warmup_max_loss=1e-6)


def test_arc_trains_on_its_own_chains(cache, tmp_path):
    """chain_steps through train_arc and the CLI: G's fake comes from its own 4-step chain on every step (D's too),
    G and D both move, and the settings are recorded in the run."""
    _arc_run(cache, tmp_path / "c", 4, chain_steps=(4,), chain_fraction=1.0)
    state = loop.load_state(tmp_path / "c")
    base = edgegen.load_pipeline("random:tiny").dit.state_dict()
    assert any(not torch.equal(state["G"][k], v) for k, v in base.items())
    assert state["config"]["chain_steps"] in ([4], (4,)) and state["config"]["chain_fraction"] == 1.0
    res = CliRunner().invoke(main, ["train", "arc", "--model", "random:tiny", "--cache", str(cache), "--out",
                                    str(tmp_path / "cli"), "--steps", "3", "--batch-size", "2", "--head-channels", "8",
                                    "--disc-warmup-steps", "0", "--chain-steps", "4,8", "--chain-fraction", "0.5"])
    assert res.exit_code == 0, res.output
    assert loop.load_state(tmp_path / "cli")["config"]["chain_steps"] in ([4, 8], (4, 8))


def test_rf_latent_scale_is_stored(cache, tmp_path):
    model = train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "base", steps=1,
                     cfg=RFConfig(batch_size=2, latent_scale=2.0))
    assert json.loads((model / "model_config.json").read_text())["model"]["pretransform"]["scale"] == 2.0
    assert edgegen.load_pipeline(model, t5=tmp_path / "base" / "t5").config.vae_scale == 2.0


# --- runs: checkpoints, resume -------------------------------------------------------------------------------

def test_rf_checkpoint_loads_and_is_official_layout(tiny, cache, tmp_path):
    model = train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "base", steps=2,
                     cfg=RFConfig(batch_size=4))
    config = json.loads((model / "model_config.json").read_text())
    assert config["model"]["diffusion"]["diffusion_objective"] == "rectified_flow"
    assert set(load_file(str(model / "model.safetensors"))) == set(tiny.official_state_dict())
    pipe = edgegen.load_pipeline(model, t5=tmp_path / "base" / "t5")
    ema = loop.load_state(tmp_path / "base")["ema"]
    for k, v in pipe.dit.state_dict().items():
        assert torch.equal(v, ema[k]), k
    assert pipe.generate(GenerateRequest("a low sine tone", seconds=0.5,
                                         steps=2)).shape == (2, int(0.5 * pipe.sample_rate))


def _arc_run(cache, out, steps, resume=False, **kw):
    cfg = arc.ARCConfig(**{**SMALL_ARC, **kw})
    return arc.train_arc(model="random:tiny", t5=None, cache=cache, out=out, cfg=cfg, steps=steps, resume=resume)


def test_arc_resume_is_identical(cache, tmp_path):
    _arc_run(cache, tmp_path / "straight", 4)
    _arc_run(cache, tmp_path / "split", 2)
    _arc_run(cache, tmp_path / "split", 4, resume=True)
    a, b = (loop.load_state(tmp_path / d) for d in ("straight", "split"))
    assert a["step"] == b["step"] == 4
    for key in ("G", "D", "ema"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert a["opt_d"]["state"][0]["step"] == b["opt_d"]["state"][0]["step"] == 3  # 2 warm-up D steps + 1
    assert a["opt_g"]["state"][0]["step"] == 1
    config = json.loads((tmp_path / "split" / "model" / "model_config.json").read_text())
    assert config["model"]["diffusion"]["diffusion_objective"] == "rf_denoiser"
    edgegen.load_pipeline(tmp_path / "split" / "model", t5=tmp_path / "split" / "t5")


def test_rf_resume_is_identical_and_guards_settings(cache, tmp_path):
    cfg = RFConfig(batch_size=4)
    train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "a", steps=4, cfg=cfg)
    train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "b", steps=2, cfg=cfg)
    with pytest.raises(EdgegenError, match="--resume"):
        train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "b", steps=4, cfg=cfg)
    with pytest.raises(EdgegenError, match="lr"):
        train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "b", steps=4, cfg=RFConfig(batch_size=4, lr=1),
                 resume=True)
    train_rf(model="random:tiny", t5=None, cache=cache, out=tmp_path / "b", steps=4, cfg=cfg, resume=True)
    a, b = (loop.load_state(tmp_path / d) for d in "ab")
    for key in ("dit", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


# --- data ----------------------------------------------------------------------------------------------------

def test_cache_skips_unreadable_and_silent_files(tiny, tmp_path):
    sr = tiny.sample_rate
    sf.write(str(tmp_path / "good.wav"), np.sin(np.arange(sr // 2) / 5.0).astype(np.float32), sr)
    sf.write(str(tmp_path / "quiet.wav"), np.zeros((sr // 2, 2), np.float32), sr)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    sf.write(str(tmp_path / "slow.wav"), np.random.default_rng(0).standard_normal(11025).astype(np.float32) * 0.1,
             22050)  # resampled, padded
    (tmp_path / "caps.csv").write_text("path,caption,seconds\ngood.wav,a tone,0.5\nquiet.wav,silence,\n"
                                       "broken.wav,noise,\nmissing.wav,nothing,\nslow.wav,noise,\n")
    report = build_cache(pipe=tiny, records=read_captions(tmp_path / "caps.csv"), root=tmp_path,
                         out=tmp_path / "c.safetensors")
    assert report.encoded == 2
    reasons = dict(report.skipped)
    assert set(reasons) == {"quiet.wav", "broken.wav", "missing.wav"}
    assert reasons["quiet.wav"].startswith("silent") and reasons["broken.wav"].startswith("unreadable")
    assert json.loads((tmp_path / "c.safetensors.report.json").read_text())["encoded"] == 2
    data = LatentData.load(tmp_path / "c.safetensors")
    assert data.latents.shape == (2, 64, tiny.latent_length) and data.cross.shape[1:] == (65, 32)


def test_captions_errors(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"path": "a.wav"}\n')
    with pytest.raises(EdgegenError, match="c.jsonl:1"):
        read_captions(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"path": "a.wav", "caption": "x", "mood": "calm"}\n')
    with pytest.raises(EdgegenError, match="unknown fields"):
        read_captions(tmp_path / "d.jsonl")


# --- CLI and DDP ---------------------------------------------------------------------------------------------

def test_cli_error_is_one_line(cache, tmp_path):
    result = CliRunner().invoke(main, ["train", "arc", "--model", str(tmp_path / "nope"), "--cache", str(cache),
                                       "--out", str(tmp_path / "r"), "--steps", "1"])
    assert result.exit_code == 2 and "edgegen: error: model folder not found" in result.output
    assert not (tmp_path / "r").exists()


def test_torchrun_ddp_two_processes(cache, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to the interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m", "edgegen.cli", "train"]
    out = tmp_path / "ddp"
    cmd = base + ["arc", "--model", "random:tiny", "--cache", str(cache), "--out", str(out), "--steps", "4",
                  "--batch-size", "2", "--lr", "1e-3", "--save-every", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = loop.load_state(out)
    assert state["step"] == 4 and state["config"]["world"] == 2
    edgegen.load_pipeline(out / "model", t5=out / "t5")
    shutil.rmtree(out)


def test_store_loads_a_file_whose_header_length_starts_with_0x80(tmp_path):
    """A safetensors file begins with its header length (little-endian u64): one in 32 begins with byte 0x80,
    which is also a pickle's first byte. Such a file is a valid cache, not an old pickle."""
    from edgegen.train.store import CACHE, load_tree, save_tree

    path = tmp_path / "c.safetensors"
    for pad in range(600):
        save_tree(path, {"pad": "x" * pad, "latents": torch.arange(6.0)}, kind=CACHE)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    tree = load_tree(path, kind=CACHE, what="latent cache", remedy="rebuild it")
    assert torch.equal(tree["latents"], torch.arange(6.0)) and tree["pad"] == "x" * pad
