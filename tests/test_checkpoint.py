"""Loading the official layout: round trip, strictness, corrupt files, out-of-family configs, T5 lookup."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import edgegen
from edgegen.checkpoint import find_t5
from edgegen.common import sha256_file
from edgegen.errors import EdgegenError
from edgegen.metrics import rel_err


def _outputs(pipe):
    ids, mask = pipe.tokenize(["a dog barking", "warm lo-fi piano"])
    cross, glob = pipe.text_encoder(ids, mask, torch.tensor([0.5, 0.2]))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, pipe.latent_length, generator=g)
    v = pipe.dit(x, torch.tensor([0.9, 0.3]), cross, glob)
    audio = pipe.decoder(x[:1])
    lat = pipe.encode_audio(audio)
    return cross, glob, v, audio, lat


def test_official_layout_round_trip(tiny, tiny_dirs):
    model_dir, t5_dir = tiny_dirs
    keys = load_file(str(model_dir / "model.safetensors")).keys()
    assert any(k.endswith("weight_g") for k in keys) and "model.model.transformer.rotary_pos_emb.inv_freq" in keys
    loaded = edgegen.load_pipeline(model_dir, t5=t5_dir)
    for ref, got in zip(_outputs(tiny), _outputs(loaded)):
        assert rel_err(ref, got) < 2e-5  # weight norm re-folds g * v / ||v|| with float32 rounding
    # the manifest's source: the files' own digests, and the T5 precision they were loaded with
    assert loaded.source.checkpoint_sha256 == sha256_file(model_dir / "model.safetensors")
    assert loaded.source.config_sha256 == sha256_file(model_dir / "model_config.json")
    assert loaded.source.t5_precision == "fp16"


def test_model_ckpt_with_state_dict(tiny, tiny_dirs, tmp_path):
    model_dir, t5_dir = tiny_dirs
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(model_dir / "model_config.json", d)
    torch.save({"state_dict": load_file(str(model_dir / "model.safetensors")), "global_step": 3}, d / "model.ckpt")
    loaded = edgegen.load_pipeline(d, t5=t5_dir)
    assert rel_err(_outputs(tiny)[2], _outputs(loaded)[2]) < 1e-6


def _edited(model_dir, tmp_path, edit):
    d = tmp_path / "edited"
    d.mkdir()
    shutil.copy(model_dir / "model_config.json", d)
    state = load_file(str(model_dir / "model.safetensors"))
    edit(state)
    save_file(state, str(d / "model.safetensors"))
    return d


def test_missing_extra_and_misshaped_reported_together(tiny_dirs, tmp_path):
    model_dir, t5_dir = tiny_dirs

    def edit(state):
        del state["model.model.transformer.layers.1.ff.ff.2.bias"]
        state["model.model.extra.weight"] = torch.zeros(3)
        state["pretransform.model.decoder.layers.0.bias"] = torch.zeros(7)

    with pytest.raises(EdgegenError) as err:
        edgegen.load_pipeline(_edited(model_dir, tmp_path, edit), t5=t5_dir)
    msg = str(err.value)
    assert "1 missing tensors: model.model.transformer.layers.1.ff.ff.2.bias" in msg
    assert "1 unexpected tensors: model.model.extra.weight" in msg
    assert "pretransform.model.decoder.layers.0.bias is [7], expected [128]" in msg


@pytest.mark.parametrize("kind", ["missing", "extra", "shape"])
def test_each_problem_alone(tiny_dirs, tmp_path, kind):
    model_dir, t5_dir = tiny_dirs
    key = "conditioner.conditioners.seconds_total.embedder.embedding.1.weight"
    edits = {"missing": lambda s: s.pop(key), "extra": lambda s: s.__setitem__("foo.bar", torch.ones(1)),
             "shape": lambda s: s.__setitem__(key, torch.ones(2, 2))}
    with pytest.raises(EdgegenError, match={"missing": "missing tensors", "extra": "unexpected tensors: foo.bar",
                                            "shape": "wrong shapes"}[kind]):
        edgegen.load_pipeline(_edited(model_dir, tmp_path, edits[kind]), t5=t5_dir)


def test_truncated_checkpoint(tiny_dirs, tmp_path):
    model_dir, t5_dir = tiny_dirs
    d = tmp_path / "trunc"
    d.mkdir()
    shutil.copy(model_dir / "model_config.json", d)
    data = (model_dir / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgegenError, match="corrupt or truncated"):
        edgegen.load_pipeline(d, t5=t5_dir)


def test_missing_checkpoint_and_folder(tiny_dirs, tmp_path):
    model_dir, t5_dir = tiny_dirs
    d = tmp_path / "noweights"
    d.mkdir()
    shutil.copy(model_dir / "model_config.json", d)
    with pytest.raises(EdgegenError, match="neither model.safetensors nor model.ckpt"):
        edgegen.load_pipeline(d, t5=t5_dir)
    with pytest.raises(EdgegenError, match="model folder not found"):
        edgegen.load_pipeline(tmp_path / "nope", t5=t5_dir)


@pytest.mark.parametrize("path,value,field", [
    (("model", "diffusion", "config", "attn_kwargs"), {"qk_norm": "l2"}, "attn_kwargs.qk_norm"),
    (("model", "diffusion", "config", "global_cond_type"), "adaLN", "global_cond_type"),
    (("model", "pretransform", "config", "bottleneck", "type"), "rvq", "bottleneck.type"),
    (("model", "diffusion", "diffusion_objective"), "v", "diffusion_objective"),
    (("model_type",), "autoencoder", "model_type"),
])
def test_out_of_family_config_names_the_field(tiny_dirs, tmp_path, path, value, field):
    model_dir, t5_dir = tiny_dirs
    raw = json.loads((model_dir / "model_config.json").read_text())
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    d = tmp_path / "cfg"
    d.mkdir()
    (d / "model_config.json").write_text(json.dumps(raw))
    shutil.copy(model_dir / "model.safetensors", d)
    with pytest.raises(EdgegenError, match=f"unsupported .*{field}"):
        edgegen.load_pipeline(d, t5=t5_dir)


def test_any_family_config_builds(tiny_dirs, tmp_path):
    """Depth, width, heads and latent length all come from the config."""
    from edgegen.config import ModelConfig
    from edgegen.presets import PRESETS

    raw = json.loads(json.dumps(PRESETS["tiny"][0]))
    raw["sample_size"] = 2048 * 24
    raw["model"]["diffusion"]["config"].update(depth=3, num_heads=4, embed_dim=96)
    cfg = ModelConfig.from_dict(raw)
    assert (cfg.latent_length, cfg.dit.depth, cfg.dit.head_dim, cfg.dit.rotary_dim) == (24, 3, 24, 32)


def test_t5_lookup(tiny_dirs, tmp_path, monkeypatch):
    """find_t5 takes a T5 folder or a hub cache folder, and reads no environment variable."""
    _, t5_dir = tiny_dirs
    hub = tmp_path / "hf" / "hub"
    with pytest.raises(EdgegenError, match="holds no Hugging Face snapshot models--google-t5--t5-base/snapshots"):
        find_t5(hub)
    snap = hub / "models--google-t5--t5-base" / "snapshots" / "abc123"
    shutil.copytree(t5_dir, snap)
    assert find_t5(hub) == snap
    assert find_t5(t5_dir) == t5_dir
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EdgegenError, match="no T5 encoder given"):
        find_t5(None)  # the library ignores the environment
    with pytest.raises(EdgegenError, match="is not a T5 folder"):
        find_t5(tmp_path)


@pytest.mark.parametrize("var", ["HF_HUB_CACHE", "HF_HOME"])
def test_cli_passes_the_hub_cache_from_the_environment(tiny_dirs, tmp_path, monkeypatch, var):
    from click.testing import CliRunner

    from edgegen.cli import main

    model_dir, t5_dir = tiny_dirs
    home = tmp_path / "hf"
    shutil.copytree(t5_dir, home / "hub" / "models--google-t5--t5-base" / "snapshots" / "abc123")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(var, str(home / "hub" if var == "HF_HUB_CACHE" else home))
    res = CliRunner().invoke(main, ["info", "--model", str(model_dir)])
    assert res.exit_code == 0, (res.output, res.exception)
    snap = (home / "hub" / "models--google-t5--t5-base" / "snapshots" / "abc123").resolve()
    assert f"t5              {snap} (weights fp16)" in res.output
