"""Reuse of artifacts an earlier export lowered from exactly the same inputs.

    cache = ArtifactCache.from_env()          # EDGEGEN_EXPORT_CACHE=DIR turns it on; None when unset
    key = cache.key(backend=..., component=..., module=reference, ...)
    if not cache.fetch(key, path): ...lower into path...; cache.store(key, path, applied, fraction)

Lowering dominates an export (a full-size DiT takes minutes; even a tiny decoder takes 15-25 s on ExecuTorch), and
re-exporting a model with another decoder recipe lowers the same text encoder and DiT again. With
`EDGEGEN_EXPORT_CACHE` set, `export_bundle` keeps each artifact it lowers under that folder and copies it back
when every input of the lowering is the same:

- the component's weights (sha256 of every parameter and buffer) and structure (each submodule's class and its
  plain attributes: head counts, dilations, paddings), and the example inputs' shapes and dtypes;
- the backend, the target (its whole profile), the rules resolved for it, the decoder's stream settings;
- the versions of torch, torchao, the backend's converter, and the source of edgegen itself (any edit to the
  package makes every entry stale).

A reused artifact is verified like a new one (`verify.py` runs it against the reference), and the manifest is
written the same way. Entries are folders renamed into place, so a crash leaves no half entry; a damaged entry is
lowered again; a value that is not a writable folder is an EdgegenError before any work. Off by default: nothing
is written outside the bundle unless asked. The test suite turns it on for one run (tests/conftest.py), so tests
that export the same component share its lowering.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from torch import nn

from edgegen.common import sha256_file
from edgegen.errors import EdgegenError

ENV = "EDGEGEN_EXPORT_CACHE"
FORMAT = 1  # bump when what an entry holds changes
_PACKAGES = ("torch", "torchao", "executorch", "litert-torch", "ai-edge-litert")
_PLAIN = (bool, int, float, str, type(None))


@functools.cache
def _edgegen_source_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def _plain(value):
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value):
        return list(value)
    return None


def module_structure(module: nn.Module) -> list:
    """Each submodule's path, class and plain attributes (numbers, strings, tuples of them): what, beside the
    weights, decides the function a module computes."""
    out = []
    for path, m in module.named_modules():
        attrs = {k: _plain(v) for k, v in sorted(vars(m).items()) if not k.startswith("_") and _plain(v) is not None}
        out.append([path, f"{type(m).__module__}.{type(m).__qualname__}", attrs])
    return out


@dataclass(frozen=True)
class ArtifactCache:
    root: Path

    @classmethod
    def from_env(cls) -> ArtifactCache | None:
        """The cache `EDGEGEN_EXPORT_CACHE` names (made if missing), or None when unset; EdgegenError when it names
        something that is not a writable folder (checked before any export work)."""
        value = os.environ.get(ENV)
        if not value:
            return None
        root = Path(value)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgegenError(f"{ENV}={value}: cannot make that folder ({exc.strerror or exc}); point it at a "
                               "writable folder, or unset it") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise EdgegenError(f"{ENV}={value}: the folder is not writable; point it at a writable folder, or unset "
                               "it")
        return cls(root)

    def key(self, *, backend: str, component: str, module: nn.Module, weights: dict, example: tuple,
            target, rules: tuple, stream: dict | None) -> str:
        """`weights`: name -> (…, sha256) as `weight_fingerprints` gives them."""
        material = {
            "format": FORMAT, "edgegen": _edgegen_source_digest(), "versions": _versions(), "backend": backend,
            "component": component, "structure": module_structure(module),
            "weights": sorted((name, fp[-1].hex()) for name, fp in weights.items()),
            "example": [[list(t.shape), str(t.dtype)] for t in example],
            "target": repr(target), "rules": repr(rules), "stream": stream,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=repr).encode()).hexdigest()

    @contextmanager
    def claimed(self, key: str):
        """Hold `key`'s lock for the block: a second export of the same component (another process on the same
        folder) waits for the first to store it, then copies it, instead of lowering it too."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def fetch(self, key: str, path: Path) -> tuple[dict[str, str], float | None] | None:
        """Copy the entry's artifact to `path`; (layer -> scheme applied, delegated fraction), or None on a miss (a
        damaged entry is removed: a miss too). Call it holding `claimed(key)`."""
        entry = self.root / key
        try:
            meta = json.loads((entry / "meta.json").read_text())
            artifact = entry / meta["file"]
            if sha256_file(artifact) != meta["sha256"]:
                shutil.rmtree(entry)  # damaged: the lowering that follows stores a new one
                return None
            shutil.copyfile(artifact, path)
            return meta["applied"], meta["delegated_fraction"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, path: Path, applied: dict[str, str], fraction: float | None) -> None:
        """Keep `path` as `key`'s entry (a folder renamed into place; a concurrent writer's entry wins)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
        try:
            shutil.copyfile(path, tmp / path.name)
            meta = {"file": path.name, "sha256": sha256_file(path), "applied": applied,
                    "delegated_fraction": fraction}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            os.rename(tmp, self.root / key)
        except OSError:  # another export stored the same key first (or the disk is full): keep theirs, or none
            shutil.rmtree(tmp, ignore_errors=True)
