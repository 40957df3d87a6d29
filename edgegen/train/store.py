"""Training files (the latent cache, a run's resumable state) as safetensors: loading one never runs code.

    save_tree(Path("cache.safetensors"), {"latents": x, "captions": [...]}, kind=CACHE)   # atomic
    tree = load_tree(Path("cache.safetensors"), kind=CACHE, what="latent cache",
                     remedy="rebuild it with `edgegen train cache`")

A tree is nested dicts (str or int keys), lists, tuples, tensors and None / bool / int / float / str. Tensors go
in the safetensors body under their path in the tree ("opt/state/0/exp_avg"); everything else is JSON in the
header's metadata, where every container is tagged ({"dict": [[k, v], ...]}, {"tuple": [...]}) and a tensor is
{"tensor": name}, so loading gives back exactly what was saved (tuples stay tuples, int keys stay ints).
`kind` ("edgegen-latent-cache/1") names what the file holds and its version. A pickle (what edgegen wrote with
torch.save before) or any other file is refused with one line: nothing in it is unpickled or executed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgegen.common import atomic_path
from edgegen.errors import EdgegenError

CACHE = "edgegen-latent-cache/1"
STATE = "edgegen-train-state/1"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; a bare pickle (protocol 2+)


def save_tree(path: Path, tree, *, kind: str) -> Path:
    """Write `tree` to `path` atomically (a temporary file beside it, then a rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()

    def encode(obj, name: str):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, torch.Tensor):
            t = obj.detach().to("cpu").contiguous()
            ptr = t.untyped_storage().data_ptr()
            if t.numel() and ptr in storages:  # safetensors refuses tensors that share memory
                t = t.clone()
            storages.add(t.untyped_storage().data_ptr())
            key, n = name or "tensor", 1
            while key in tensors:
                key, n = f"{name}#{n}", n + 1
            tensors[key] = t
            return {"tensor": key}
        if isinstance(obj, (list, tuple)):
            items = [encode(v, f"{name}/{i}") for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else {"tuple": items}
        if isinstance(obj, dict):
            if bad := [k for k in obj if not isinstance(k, (str, int))]:
                raise TypeError(f"save_tree: key {bad[0]!r} at {name or '/'} is not a str or int")
            return {"dict": [[k, encode(v, f"{name}/{k}" if name else str(k))] for k, v in obj.items()]}
        raise TypeError(f"save_tree: {type(obj).__name__} at {name or '/'} is not a tensor, number, str or container")

    meta = {"edgegen": kind, "tree": json.dumps(encode(tree, ""))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_tree(path: Path, *, kind: str, what: str, remedy: str):
    """The tree saved in `path` by save_tree with this `kind`; anything else is one EdgegenError line."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise EdgegenError(f"{what} {'is a folder, not a file' if path.is_dir() else 'not found'}: {path}; {remedy}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("edgegen") != kind:
                found = f"holds {meta['edgegen']!r}" if "edgegen" in meta else "was not written by edgegen"
                raise EdgegenError(f"{path} is not a {what} ({kind}): it {found}; {remedy}")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        # only now look at the first bytes, to name the old format: a safetensors file may start with 0x80 too
        # (its header length, little-endian), so the magic bytes decide nothing before safe_open has failed
        with open(path, "rb") as f:
            head = f.read(4)
        if head.startswith(_PICKLE_MAGIC):
            raise EdgegenError(f"{path} is a {what} in the old torch.save (pickle) format, which edgegen no longer "
                               f"loads because unpickling can run code; {remedy}") from None
        raise EdgegenError(f"{path} is not a {what} (not a safetensors file: {exc}); {remedy}") from None

    def decode(obj):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        if isinstance(obj, dict) and len(obj) == 1:
            (tag, value), = obj.items()
            if tag == "tensor" and isinstance(value, str) and value in tensors:
                return tensors[value]
            if tag == "tuple" and isinstance(value, list):
                return tuple(decode(v) for v in value)
            if tag == "dict" and isinstance(value, list) and all(
                    isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], (str, int)) for kv in value):
                return {k: decode(v) for k, v in value}
        raise ValueError(f"unexpected entry {json.dumps(obj)[:60]}")

    try:
        return decode(json.loads(meta.get("tree", "")))
    except (ValueError, RecursionError) as exc:
        raise EdgegenError(f"{path} is a damaged {what} ({exc}); {remedy}") from None
