"""Bad model / T5 folders through the CLI (issues 17.6, 17.8, 17.9): exit 2, exactly one `edgegen: error:` line
naming the file, the field or tensor and what is wrong, no traceback, and nothing written.

The model is the small upstream fixture (tests/fixtures/upstream), copied and then damaged one way per test."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers import assert_one_error, invoke_cli

FIX = Path(__file__).parent / "fixtures" / "upstream"


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    model, t5 = tmp_path / "model", tmp_path / "t5"
    shutil.copytree(FIX / "model", model)
    shutil.copytree(FIX / "t5", t5)
    return model, t5


def _fails(args, *needles: str) -> str:
    """Runs `edgegen generate` in-process on args: assert_one_error's line (returned), and no output file."""
    out = Path(args[args.index("-o") + 1])
    line = assert_one_error(invoke_cli(*args), *needles)
    assert not out.exists() and not list(out.parent.glob(out.name + "*"))
    return line


def _gen(model, t5, out, *extra):
    return ["generate", "-m", model, "--t5", t5, "-p", "a dog barking", "-s", "1", *extra, "-o", out]


def _edit_config(t5: Path, edit) -> Path:
    path = t5 / "config.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    return path


def test_t5_config_invalid_json(dirs, tmp_path):
    model, t5 = dirs
    (t5 / "config.json").write_text('{"d_model": 64,')
    _fails(_gen(model, t5, tmp_path / "o.wav"), f"{t5 / 'config.json'} is not valid JSON", "line 1")


def test_t5_config_not_an_object(dirs, tmp_path):
    model, t5 = dirs
    (t5 / "config.json").write_text("[64]")
    _fails(_gen(model, t5, tmp_path / "o.wav"), f"{t5 / 'config.json'}: expected a JSON object", "list")


@pytest.mark.parametrize("field,value,allowed", [
    ("d_model", "64", "an integer >= 1"),
    ("num_heads", 0, "an integer >= 1"),
    ("num_layers", True, "an integer >= 1"),
    ("d_ff", 12.5, "an integer >= 1"),
    ("relative_attention_num_buckets", 2, "an integer >= 4"),
    ("layer_norm_epsilon", "1e-6", "a number between 0 and 1"),
    ("feed_forward_proj", "swiglu", "'relu' and 'gated-gelu'"),
])
def test_t5_config_wrong_value_names_field_value_and_allowed(dirs, tmp_path, field, value, allowed):
    model, t5 = dirs
    path = _edit_config(t5, lambda raw: raw.__setitem__(field, value))
    shown = repr(value) if field == "feed_forward_proj" else json.dumps(value)
    _fails(_gen(model, t5, tmp_path / "o.wav"), str(path), f"{field}={shown}", allowed)


def test_t5_config_missing_field(dirs, tmp_path):
    model, t5 = dirs
    path = _edit_config(t5, lambda raw: raw.pop("d_kv"))
    _fails(_gen(model, t5, tmp_path / "o.wav"), str(path), "field 'd_kv' is missing")


def test_t5_d_model_mismatch_blames_the_t5_config(dirs, tmp_path):
    """The fixture's conditioning is 64 wide with no prompt projection: a 32-wide T5 is the T5 config's fault."""
    model, t5 = dirs
    path = _edit_config(t5, lambda raw: raw.update(d_model=32))
    line = _fails(_gen(model, t5, tmp_path / "o.wav"), str(path), "d_model=32", "cond_dim=64")
    assert "model.safetensors does not match" not in line


def test_t5_d_model_mismatch_with_a_prompt_projection(dirs, tmp_path):
    model, t5 = dirs
    state = load_file(str(model / "model.safetensors"))
    state["conditioner.conditioners.prompt.proj_out.weight"] = torch.zeros(64, 48)
    state["conditioner.conditioners.prompt.proj_out.bias"] = torch.zeros(64)
    save_file(state, str(model / "model.safetensors"))
    _fails(_gen(model, t5, tmp_path / "o.wav"), str(t5 / "config.json"), "d_model=64", "takes 48-wide T5 states")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_checkpoint_tensor_is_refused_by_name(dirs, tmp_path, bad):
    model, t5 = dirs
    state = load_file(str(model / "model.safetensors"))
    key = "model.model.transformer.layers.1.ff.ff.2.bias"
    state[key][3] = bad
    save_file(state, str(model / "model.safetensors"))
    _fails(_gen(model, t5, tmp_path / "o.wav"), str(model / "model.safetensors"), f"tensor {key} holds 1 non-finite")


def test_non_finite_t5_tensor_is_refused_by_name(dirs, tmp_path):
    model, t5 = dirs
    state = load_file(str(t5 / "model.safetensors"))
    key = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    state[key][0, 0] = float("nan")
    save_file(state, str(t5 / "model.safetensors"))
    _fails(_gen(model, t5, tmp_path / "o.wav"), str(t5 / "model.safetensors"), f"tensor {key} holds 1 non-finite")


def test_t5_weight_beyond_fp16_range_suggests_fp32(dirs, tmp_path):
    model, t5 = dirs
    state = load_file(str(t5 / "model.safetensors"))
    state["shared.weight"][5, 5] = 1e6
    save_file(state, str(t5 / "model.safetensors"))
    _fails(_gen(model, t5, tmp_path / "o.wav"), "T5 tensor shared.weight", "beyond float16's range",
           "--t5-precision fp32")
    res = invoke_cli(*_gen(model, t5, tmp_path / "ok.wav", "--t5-precision", "fp32"))
    assert res.exit_code == 0, (res.output, res.exception)
    assert (tmp_path / "ok.wav").is_file()


def test_t5_not_found_names_the_place_searched(dirs, tmp_path, monkeypatch):
    """No --t5: the CLI passes the hub cache of $HF_HUB_CACHE to the library, which searches only there."""
    model, _ = dirs
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    args = ["generate", "-m", model, "-p", "a dog barking", "-s", "1", "-o", tmp_path / "o.wav"]
    _fails(args, "not found", str(tmp_path / "empty-hub"))
