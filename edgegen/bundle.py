"""Bundles: a folder (or .zip) with three artifacts, the tokenizer and a self-describing `manifest.json`.

    open_bundle(path) -> Bundle(root, manifest)   # schema and every checksum verified; zips are unpacked
    describe_bundle(path) -> str                   # `edgegen info BUNDLE`
    staging(out, force=...)                        # write into a temporary folder, rename when complete

Names of files mean nothing: the manifest says which file is which artifact, its I/O, backend, recipe,
target, source checkpoint and sampler settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgegen.errors import EdgegenError

# 1: the decoder takes the whole latent sequence. 2: adds `decoder_stream` (window, overlap, hop, receptive_field):
# the decoder artifact takes [1, 64, window] and is run over overlapping windows. An exporter writes the lowest
# version that describes the bundle, so a whole-sequence bundle stays readable by version-1 tools.
SCHEMA_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
COMPONENTS = ("text_encoder", "dit", "decoder")
REQUIRED = ("schema_version", "edgegen_version", "backend", "runtime_version", "target", "recipe", "source",
            "sample_rate", "channels", "latent_length", "max_seconds", "sampler", "tokenizer", "artifacts")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict

    def path(self, component: str) -> Path:
        return self.root / self.manifest["artifacts"][component]["file"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.manifest["tokenizer"]["file"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def components(self) -> list[str]:
        return [c for c in COMPONENTS if c in self.manifest["artifacts"]]

    @property
    def digest(self) -> str:
        """A short content id: the manifest's sha256 (it names every artifact's sha256)."""
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise EdgegenError(f"{root}: no {MANIFEST}; not an edgegen bundle")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgegenError(f"{path} is not valid JSON ({exc}); re-export the bundle") from None
    if not isinstance(manifest, dict):
        raise EdgegenError(f"{path}: expected a JSON object")
    version = manifest.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        raise EdgegenError(f"{path}: schema_version {version!r} is not supported by this edgegen "
                           f"(reads {', '.join(map(str, SCHEMA_VERSIONS))}); re-export with this version")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise EdgegenError(f"{path}: missing field(s) {', '.join(missing)}; re-export the bundle")
    if manifest["backend"] not in ("executorch", "litert"):
        raise EdgegenError(f"{path}: unknown backend {manifest['backend']!r}")
    _check_stream(path, manifest)
    return manifest


def _check_stream(path: Path, manifest: dict) -> None:
    """`decoder_stream` appears exactly in version-2 manifests and agrees with the decoder's declared input."""
    stream = manifest.get("decoder_stream")
    if (stream is not None) != (manifest["schema_version"] >= 2):
        raise EdgegenError(f"{path}: decoder_stream must be present exactly when schema_version >= 2; re-export")
    if stream is None:
        return
    try:
        window, overlap, hop = int(stream["window"]), int(stream["overlap"]), int(stream["hop"])
    except (KeyError, TypeError, ValueError):
        raise EdgegenError(f"{path}: decoder_stream needs integer window, overlap and hop; re-export") from None
    if window <= 2 * overlap or overlap < 0 or hop < 1:
        raise EdgegenError(f"{path}: decoder_stream window {window} must exceed 2 x overlap {overlap}; re-export")
    dec = manifest["artifacts"].get("decoder")
    if dec is not None and dec["inputs"][0]["shape"][-1] != window:
        raise EdgegenError(f"{path}: the decoder takes {dec['inputs'][0]['shape'][-1]} latent frames but "
                           f"decoder_stream.window is {window}; re-export the bundle")


def verify(root: Path, manifest: dict) -> None:
    """Every artifact and the tokenizer exist with the size and sha256 the manifest records."""
    entries = [(f"artifact {c}", e) for c, e in manifest["artifacts"].items()] + [("tokenizer", manifest["tokenizer"])]
    for what, entry in entries:
        path = root / entry["file"]
        if not path.is_file():
            raise EdgegenError(f"{root}: {what} file {entry['file']} is missing")
        if "size" in entry and path.stat().st_size != entry["size"]:
            raise EdgegenError(f"{root}: {what} {entry['file']} is {path.stat().st_size} bytes, manifest says "
                               f"{entry['size']}: the bundle is corrupt; re-export it")
        if sha256_file(path) != entry["sha256"]:
            raise EdgegenError(f"{root}: {what} {entry['file']} fails its sha256 check: the bundle is corrupt; "
                               "re-export it")


def open_bundle(path: Path, *, check: bool = True) -> Bundle:
    """A verified bundle; a .zip is unpacked into a temporary folder first (kept for the process' life)."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        tmp = Path(tempfile.mkdtemp(prefix="edgegen-bundle-"))
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        roots = [p.parent for p in tmp.rglob(MANIFEST)]
        if len(roots) != 1:
            raise EdgegenError(f"{path}: expected exactly one {MANIFEST} inside the zip")
        path = roots[0]
    elif not path.is_dir():
        raise EdgegenError(f"bundle not found: {path}")
    manifest = read_manifest(path)
    if check:
        verify(path, manifest)
    return Bundle(root=path, manifest=manifest)


def describe_bundle(path: Path) -> str:
    b = open_bundle(path)
    m = b.manifest
    lines = [f"bundle          {path}  (checksums OK)",
             f"backend         {m['backend']} {m['runtime_version']}  target {m['target'].get('name')}",
             f"recipe          {m['recipe'].get('name')}: {m['recipe'].get('description', '')}",
             f"source          {m['source'].get('model')}",
             f"audio           {m['sample_rate']} Hz, {m['channels']} ch, up to {m['max_seconds']:.2f} s "
             f"({m['latent_length']} latents)",
             f"sampler         {m['sampler']['type']}, {m['sampler']['steps']} steps, logSNR "
             f"{m['sampler']['logsnr_max']} -> {m['sampler']['logsnr_min']}",
             "decoder         " + (f"streamed: windows of {m['decoder_stream']['window']} latent frames, overlap "
                                   f"{m['decoder_stream']['overlap']}" if "decoder_stream" in m else "whole sequence"),
             f"edgegen         {m['edgegen_version']}", "artifacts:"]
    for comp, a in m["artifacts"].items():
        ins = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in a["inputs"])
        outs = ", ".join(f"{o['name']} {o['dtype']}{o['shape']}" for o in a["outputs"])
        extra = f"  delegated {a['delegated_fraction']:.0%}" if "delegated_fraction" in a else ""
        lines.append(f"  {comp:<13}{a['file']:<22}{a['size'] / 1e6:>9.2f} MB{extra}")
        lines.append(f"  {'':<13}({ins}) -> ({outs})")
    return "\n".join(lines)


@contextlib.contextmanager
def staging(out: Path, *, force: bool):
    """Yield a temporary folder beside `out`; on success it becomes `out`, on any failure it vanishes."""
    out = Path(out)
    if out.exists() and not force:
        raise EdgegenError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def zip_bundle(root: Path, zip_path: Path) -> None:
    """Stored (uncompressed) zip, so an app can memory-map artifacts after copying them out."""
    tmp = zip_path.with_name(f".{zip_path.name}.partial-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted(root.iterdir()):
                zf.write(f, arcname=f"{zip_path.stem}/{f.name}")
        os.replace(tmp, zip_path)
    finally:
        tmp.unlink(missing_ok=True)
