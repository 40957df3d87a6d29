"""Strict loading of the official checkpoint layout and of Hugging Face T5 folders.

    model_dir/model_config.json + model.safetensors (or model.ckpt with a "state_dict")
      model.model.*                                  -> DiT
      pretransform.model.decoder.* / .encoder.*      -> Oobleck decoder / encoder (weight norm folded here)
      conditioner.conditioners.seconds_total.*       -> NumberConditioner
      conditioner.conditioners.prompt.proj_out.*     -> TextEncoder.proj_out (only when T5 width != cond_dim)

Every tensor must be consumed: missing, unexpected and mis-shaped tensors are reported together, by name,
in one `EdgegenError`, and so is the first tensor holding NaN or inf. T5 is not in the checkpoint; `find_t5()`
locates it in a folder it is given: a T5 folder, or a Hugging Face hub cache to search offline (the CLI passes
the cache of $HF_HUB_CACHE / $HF_HOME; the library reads no environment).
"""

from __future__ import annotations

import re

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
            obj = load_file(str(path))
        else:
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
    check_finite_tensors(obj, path)
    return obj


def check_finite_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse a checkpoint whose floating-point tensors hold NaN or inf, naming the first such tensor."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise EdgegenError(f"{path}: tensor {name} holds {bad} non-finite value(s) (NaN or inf) of {t.numel()}; "
                               "the file is damaged or came from a diverged run: re-download or re-export it")


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


def hub_snapshots(hub: Path, name: str) -> list[Path]:
    """Snapshot folders of Hugging Face repo `name` in hub cache `hub`: the one refs/main names first."""
    repo = Path(hub) / ("models--" + name.replace("/", "--"))
    ref = repo / "refs" / "main"
    snaps = [repo / "snapshots" / ref.read_text().strip()] if ref.is_file() else []
    return snaps + (sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else [])


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def find_model(model: str | Path, hub: Path, *, builtins: str) -> Path:
    """The official-layout folder that `model` names: that folder, or else the snapshot of Hugging Face repo `model`
    (owner/name, e.g. stabilityai/stable-audio-open-small) in hub cache `hub` that holds model_config.json; never
    downloads. `builtins` lists the built-in models for the error line."""
    d = Path(model)
    if d.is_dir():
        return d
    if _REPO_ID.fullmatch(str(model)):
        for snap in hub_snapshots(hub, str(model)):
            if (snap / "model_config.json").is_file():
                return snap
        repo = Path(hub) / ("models--" + str(model).replace("/", "--"))
        raise EdgegenError(f"model {model} not found: no such folder, and the Hugging Face cache has no snapshot of it "
                           f"with model_config.json (looked in {repo}/snapshots/); fetch it with `huggingface-cli "
                           f"download {model}` or set HF_HUB_CACHE to the cache holding it (edgegen never downloads)")
    raise EdgegenError(f"model folder not found: {d} (expected model_config.json + model.safetensors, a Hugging Face "
                       f"repo id in the local cache, or a built-in model: {builtins})")


def find_t5(t5: str | Path | None, *, model_name: str = "t5-base") -> Path:
    """The folder holding T5's config.json, weights and spiece.model; never downloads.

    `t5` is that folder, or a Hugging Face hub cache folder (`.../huggingface/hub`) holding a snapshot of
    `model_name` (for t5-base also google-t5/t5-base)."""
    if t5 is None:
        raise EdgegenError(f"no T5 encoder given for '{model_name}': pass --t5 DIR (a folder with config.json, "
                           "spiece.model and model.safetensors or pytorch_model.bin, e.g. a copy of google-t5/t5-base, "
                           "or a Hugging Face hub cache holding it)")
    d = Path(t5)
    if _is_t5_dir(d):
        return d
    names = [model_name] + (["google-t5/t5-base"] if model_name == "t5-base" else [])
    for name in names:
        for snap in hub_snapshots(d, name):
            if _is_t5_dir(snap):
                return snap
    repo = f"models--{names[-1].replace('/', '--')}"
    raise EdgegenError(f"T5 encoder '{model_name}' not found: {d} is not a T5 folder (config.json, spiece.model and "
                       f"one of {', '.join(T5_WEIGHT_FILES)}) and holds no Hugging Face snapshot {repo}/snapshots/"
                       "<revision>/ with them; pass --t5 DIR with a copy of google-t5/t5-base "
                       "(edgegen never downloads)")


def check_t5_width(state: dict[str, torch.Tensor], *, d_model: int, cond_dim: int, t5_config: Path,
                   weights: Path, model_name: str) -> None:
    """T5's width (its config.json `d_model`) must fit the checkpoint: equal to the conditioning width when the
    checkpoint has no prompt projection, else the projection's input width. The error names the T5 config."""
    w, file = state.get(PROMPT_PROJ), Path(weights).name
    if w is None and d_model != cond_dim:
        raise EdgegenError(f"{t5_config}: d_model={d_model} does not fit the model, whose conditioning width is "
                           f"cond_dim={cond_dim} and whose {file} has no prompt projection ({PROMPT_PROJ}); "
                           f"use the T5 the model was trained with ({model_name}, d_model {cond_dim})")
    if w is not None and w.ndim == 2 and w.shape[1] != d_model:
        raise EdgegenError(f"{t5_config}: d_model={d_model} does not fit the model: {file}'s {PROMPT_PROJ} "
                           f"takes {w.shape[1]}-wide T5 states; use the T5 the model was trained with ({model_name}, "
                           f"d_model {w.shape[1]})")


PROMPT_PROJ = "conditioner.conditioners.prompt.proj_out.weight"


def load_t5_state(d: Path) -> dict[str, torch.Tensor]:
    for name in T5_WEIGHT_FILES:
        if (d / name).is_file():
            return read_state_dict(d / name) if name.endswith(".safetensors") else _read_bin(d / name)
    raise EdgegenError(f"{d}: no T5 weights ({' or '.join(T5_WEIGHT_FILES)})")


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EdgegenError(f"{path} is corrupt or truncated and cannot be read ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EdgegenError(f"{path} does not hold a state dict of tensors")
    check_finite_tensors(obj, path)
    return obj
