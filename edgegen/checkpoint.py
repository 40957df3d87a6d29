"""Strict loading of the official checkpoint layout and of Hugging Face T5 folders.

    model_dir/model_config.json + model.safetensors (or model.ckpt with a "state_dict")
      model.model.*                                  -> DiT
      pretransform.model.decoder.* / .encoder.*      -> Oobleck decoder / encoder (weight norm folded here)
      conditioner.conditioners.seconds_total.*       -> NumberConditioner
      conditioner.conditioners.prompt.proj_out.*     -> TextEncoder.proj_out (only when T5 width != cond_dim)

Every tensor must be consumed: missing, unexpected and mis-shaped tensors are reported together, by name,
in one `EdgegenError`. T5 is not in the checkpoint; `find_t5()` locates it (an explicit folder, or the
Hugging Face cache, offline).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edgegen.errors import EdgegenError

_LIST_LIMIT = 12


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT]) + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")
    return f"{len(items)} {title}: {shown}"


def check_keys(expected: dict[str, tuple], found: dict[str, torch.Tensor], *, source: str) -> None:
    """Raise one error naming every missing, unexpected and mis-shaped tensor (expected: key -> shape)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} is {list(found[k].shape)}, expected {list(expected[k])}"
              for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k])]
    problems = [_listing(t, items) for t, items in
                (("missing tensors", missing), ("unexpected tensors", unexpected), ("wrong shapes", shapes)) if items]
    if problems:
        raise EdgegenError(f"{source} does not match the model: " + "; ".join(problems))


def strict_assign(module: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """load_state_dict(strict) with edgegen's one-error report; tensors are cast to the module's dtype."""
    own = module.state_dict()
    check_keys({k: tuple(v.shape) for k, v in own.items()}, state, source=source)
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or of a torch `.ckpt` holding {"state_dict": ...}."""
    path = Path(path)
    if not path.is_file():
        raise EdgegenError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except EdgegenError:
        raise
    except Exception as exc:  # safetensors and torch raise assorted types for truncated/corrupt files
        raise EdgegenError(f"{path} is corrupt or truncated and cannot be read ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:160]}); re-download or re-export it") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgegenError(f"{path} does not hold a state dict of tensors (expected a dict with 'state_dict')")
    return obj


def model_weights_file(model_dir: Path) -> Path:
    for name in ("model.safetensors", "model.ckpt"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise EdgegenError(f"{model_dir}: neither model.safetensors nor model.ckpt found "
                       "(expected the official layout: model_config.json + model.safetensors)")


# --- weight norm -------------------------------------------------------------------------------------

def weight_norm_keys(module: nn.Module) -> set[str]:
    return {f"{n}.weight" for n, m in module.named_modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))}


def official_shapes(module: nn.Module, prefix: str) -> dict[str, tuple]:
    """Checkpoint key -> shape for a module; weight-normed convs appear as weight_g [C0,1,1] + weight_v."""
    wn = weight_norm_keys(module) if prefix.startswith("pretransform.") else set()
    out = {}
    for k, v in module.state_dict().items():
        if k in wn:
            stem = k[: -len("weight")]
            out[prefix + stem + "weight_g"] = (v.shape[0], 1, 1)
            out[prefix + stem + "weight_v"] = tuple(v.shape)
        else:
            out[prefix + k] = tuple(v.shape)
    return out


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every (weight_g, weight_v) pair by weight = v * (g / ||v||), norm over all dims but 0."""
    out = {}
    for k, v in state.items():
        if k.endswith(".weight_g"):
            continue
        if k.endswith(".weight_v"):
            stem = k[: -len("weight_v")]
            out[stem + "weight"] = torch._weight_norm(v.float(), state[stem + "weight_g"].float(), 0)
        else:
            out[k] = v
    return out


# --- T5 location -------------------------------------------------------------------------------------

T5_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _is_t5_dir(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / "spiece.model").is_file() and any(
        (d / w).is_file() for w in T5_WEIGHT_FILES)


def hf_hub_dir() -> Path:
    """The Hugging Face hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def find_t5(t5: str | Path | None, *, model_name: str = "t5-base") -> Path:
    """The folder holding T5's config.json, weights and spiece.model; never downloads."""
    if t5 is not None:
        d = Path(t5)
        if not d.is_dir():
            raise EdgegenError(f"--t5 {d}: no such folder")
        if not _is_t5_dir(d):
            raise EdgegenError(f"--t5 {d}: expected config.json, spiece.model and one of {', '.join(T5_WEIGHT_FILES)}")
        return d
    hub = hf_hub_dir()
    names = [model_name] + (["google-t5/t5-base"] if model_name == "t5-base" else [])
    for name in names:
        repo = hub / ("models--" + name.replace("/", "--"))
        ref = repo / "refs" / "main"
        snaps = [repo / "snapshots" / ref.read_text().strip()] if ref.is_file() else []
        snaps += sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
        for snap in snaps:
            if _is_t5_dir(snap):
                return snap
    raise EdgegenError(
        f"T5 encoder '{model_name}' not found: pass --t5 DIR (a folder with config.json, spiece.model and "
        f"model.safetensors or pytorch_model.bin, e.g. a copy of google-t5/t5-base), or put the Hugging Face "
        f"snapshot at {hub}/models--google-t5--t5-base/snapshots/<revision>/ (edgegen never downloads)")


def load_t5_state(d: Path) -> dict[str, torch.Tensor]:
    for name in T5_WEIGHT_FILES:
        if (d / name).is_file():
            return read_state_dict(d / name) if name.endswith(".safetensors") else _read_bin(d / name)
    raise EdgegenError(f"{d}: no T5 weights ({' or '.join(T5_WEIGHT_FILES)})")


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgegenError(f"{path} is corrupt or truncated and cannot be read ({type(exc).__name__})") from None
