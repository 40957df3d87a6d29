"""Bundles: a folder (or .zip) with three artifacts, the tokenizer and a self-describing `manifest.json`.

    with open_bundle(path) as bundle:              # schema and every checksum verified; a .zip is unpacked
        bundle.root, bundle.manifest, bundle.path("dit")
    describe_bundle(path) -> str                   # `edgegen info BUNDLE`

Names of files mean nothing: the manifest says which file is which artifact, its I/O, backend, recipe,
target, source checkpoint and sampler settings.

Reading is strict, and everything is checked before any artifact is opened:
- `manifest.json` is read into a `Manifest` (edgegen/manifest.py; unknown keys refused): every error names the
  manifest, the field path (`artifacts.dit.inputs[0].shape`), the bad value and what is allowed.
- Files stay inside the bundle. An artifact's or the tokenizer's `file` must be a plain file name in the bundle
  folder: no `/` or `\\`, not `.` or `..`, so no absolute path and no subfolder; and that file must not be a
  symlink out of the bundle (`manifest.json` no symlink at all). A name that breaks this is refused before
  anything is opened or hashed, because the checksums come from the same manifest and cannot vouch for a file
  elsewhere.
- Inputs are bound by name: each input's `index` is its position in the artifact's call (`call_order`; manifests
  written before `index` existed are in call order), checked here too.
- A .zip must hold exactly one `manifest.json`; members with absolute paths, `..` or symlinks are refused
  before anything is extracted. Its unpacked copy (a temporary `edgegen-bundle-*` folder) belongs to the Bundle:
  `Bundle.close()` (or leaving the `with` block) removes it; a Bundle dropped without closing removes it when it
  is garbage collected or, at the latest, when the interpreter exits (a safety net, not the contract).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edgegen.common import sha256_file
from edgegen.errors import EdgegenError
from edgegen.manifest import Manifest, TensorSpec, plain_file_name

MANIFEST = "manifest.json"
UNPACK_PREFIX = "edgegen-bundle-"


NO_ENCODER = ("{root} has no encoder artifact, so it cannot start from init audio; re-export it with "
              "`edgegen export --audio-to-audio`")


def init_audio_shape(manifest: Manifest, root: Path | str) -> list[int]:
    """The encoder artifact's `audio` input shape [1, channels, N] (what init audio is prepared to); a bundle
    without an encoder (`root` names it) is one EdgegenError naming the export flag."""
    if "encoder" not in manifest.artifacts:
        raise EdgegenError(NO_ENCODER.format(root=root))
    return list(manifest.artifacts["encoder"].input("audio").shape)


def file_entry(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


@dataclass(frozen=True)
class Bundle:
    """A verified bundle. `unpacked` is the temporary folder a .zip was unpacked into (None for a folder): the
    Bundle owns it, `close()` (or leaving `with bundle:`) removes it, and so does garbage collection or exit."""

    root: Path
    manifest: Manifest
    unpacked: Path | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.unpacked is not None:  # safety net; close() is the contract
            object.__setattr__(self, "_cleanup", weakref.finalize(self, shutil.rmtree, self.unpacked,
                                                                  ignore_errors=True))

    def close(self) -> None:
        """Remove the unpacked copy of a .zip bundle (idempotent; nothing to do for a folder)."""
        if self.unpacked is not None:
            self._cleanup()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def path(self, component: str) -> Path:
        return self.root / self.manifest.artifacts[component].file

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.manifest.tokenizer.file

    @property
    def backend(self) -> str:
        return self.manifest.backend

    @property
    def components(self) -> list[str]:
        """The artifacts this bundle holds, in pipeline order (the encoder last, when exported)."""
        return self.manifest.components

    @property
    def digest(self) -> str:
        """A short content id: the manifest's sha256 (it names every artifact's sha256)."""
        return hashlib.sha256(json.dumps(self.manifest.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(root: Path) -> Manifest:
    """The manifest in `root`, validated against MANIFEST_SCHEMA (edgegen.manifest), the inputs' call order, and
    decoder_stream against the decoder's inputs."""
    path = root / MANIFEST
    if path.is_symlink():
        raise EdgegenError(f"{path} is a symlink; a bundle's files must be inside its folder: re-export the bundle")
    if not path.is_file():
        raise EdgegenError(f"{root}: no {MANIFEST}; not an edgegen bundle")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgegenError(f"{path} is not valid JSON ({exc}); re-export the bundle") from None
    except OSError as exc:
        raise EdgegenError(f"cannot read {path}: {exc}") from None
    manifest = Manifest.from_json(manifest, path=path)
    for comp, spec in manifest.artifacts.items():
        call_order(spec.inputs, where=f"{path}: artifacts.{comp}.inputs")
    _check_stream(path, manifest)
    return manifest


def call_order(inputs: tuple[TensorSpec, ...], *, where: str = "manifest inputs") -> list[TensorSpec]:
    """An artifact's inputs in the order its call takes them: by each input's `index` (written at export), else in
    list order (manifests from before `index`). The native runner (android_demo/runner/src/bundle.cpp) does the same."""
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise EdgegenError(f"{where} {names} repeat a name; re-export the bundle")
    idx = [i.index for i in inputs]
    if all(k is None for k in idx):
        return list(inputs)
    if not all(type(k) is int for k in idx) or sorted(idx) != list(range(len(inputs))):
        raise EdgegenError(f"{where} {names} have index {idx}: every input needs one, numbering them "
                           f"0..{len(inputs) - 1}; re-export the bundle")
    return sorted(inputs, key=lambda i: i.index)


def _check_stream(path: Path, manifest: Manifest) -> None:
    """`decoder_stream` appears exactly in version-2 and -3 manifests (overlapped windows in 2, stateful in 3) and
    agrees with the decoder's declared inputs."""
    stream, version = manifest.decoder_stream, manifest.schema_version
    if (stream is not None) != (version >= 2):
        raise EdgegenError(f"{path}: decoder_stream must be present exactly when schema_version >= 2; re-export")
    if stream is None:
        return
    window, hop = stream.window, stream.hop
    dec = manifest.artifacts.get("decoder")
    if version == 3:
        missing = [k for k in ("mode", "delay", "state_size") if getattr(stream, k) is None]
        if missing:
            raise EdgegenError(f"{path}: a schema-3 decoder_stream needs mode \"stateful\", delay and state_size "
                               f"(missing {', '.join(missing)}); re-export")
        if dec is not None:
            want = {"latents": [1, None, window], "position": [2], "state": [1, stream.state_size]}
            got = {i.name: list(i.shape) for i in dec.inputs}
            for name, shape in want.items():
                if name not in got or any(w is not None and w != g for w, g in zip(shape, got[name])) \
                        or len(shape) != len(got[name]):
                    raise EdgegenError(f"{path}: the stateful decoder needs input {name} of shape "
                                       f"{[d if d is not None else 'C' for d in shape]} (decoder_stream: window "
                                       f"{window}, state_size {stream.state_size}), the manifest lists "
                                       f"{got.get(name, 'none')}; re-export the bundle")
            outs = {o.name: list(o.shape) for o in dec.outputs}
            if outs.get("next_state") != [1, stream.state_size] or "audio" not in outs:
                raise EdgegenError(f"{path}: the stateful decoder needs outputs audio and next_state [1, "
                                   f"{stream.state_size}], the manifest lists {sorted(outs)}; re-export the bundle")
        return
    if stream.overlap is None or stream.mode is not None:
        raise EdgegenError(f"{path}: a schema-2 decoder_stream has window, overlap and hop (a stateful one needs "
                           "schema_version 3); re-export")
    overlap = stream.overlap
    if window <= 2 * overlap or hop < 1:
        raise EdgegenError(f"{path}: decoder_stream window {window} must exceed 2 x overlap {overlap}; re-export")
    if dec is not None and dec.inputs[0].shape[-1] != window:
        raise EdgegenError(f"{path}: the decoder takes {dec.inputs[0].shape[-1]} latent frames but "
                           f"decoder_stream.window is {window}; re-export the bundle")


def verify(root: Path, manifest: Manifest) -> None:
    """Every artifact and the tokenizer exist with the size and sha256 the manifest records.

    Their names were checked by read_manifest (plain file names); a symlink that leads out of the bundle is refused
    before it is followed (one to another file of the bundle is fine, as in the native runner)."""
    entries = [(f"artifact {c}", e) for c, e in manifest.artifacts.items()] + [("tokenizer", manifest.tokenizer)]
    for what, entry in entries:
        if not plain_file_name(entry.file):  # read_manifest refuses these; never follow one out of the bundle
            raise EdgegenError(f"{root}: {what} file {entry.file!r} is not a plain file name in the bundle")
        path = root / entry.file
        if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
            raise EdgegenError(f"{root}: {what} file {entry.file} is a symlink out of the bundle; a bundle's files "
                               "must be inside its folder: copy the file in (or re-export the bundle)")
        if not path.exists():
            raise EdgegenError(f"{root}: {what} file {entry.file} is missing")
        if not path.is_file():
            raise EdgegenError(f"{root}: {what} file {entry.file} is not a regular file")
        if path.stat().st_size != entry.size:
            raise EdgegenError(f"{root}: {what} {entry.file} is {path.stat().st_size} bytes, manifest says "
                               f"{entry.size}: the bundle is corrupt; re-export it")
        if sha256_file(path) != entry.sha256:
            raise EdgegenError(f"{root}: {what} {entry.file} fails its sha256 check: the bundle is corrupt; "
                               "re-export it")


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in parts:
        return "climbs out with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symlink"
    return None


def _unpack(path: Path) -> tuple[Path, Path]:
    """(temporary folder, bundle root inside it) for a zip bundle; members are checked before anything is
    extracted, and the folder is removed again on any failure."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos:
                raise EdgegenError(f"{path} is an empty zip; expected a bundle made by `edgegen export --zip`")
            for info in infos:
                if problem := _zip_member_problem(info):
                    raise EdgegenError(f"{path}: zip member {info.filename!r} {problem}; refusing to unpack it")
            manifests = [i.filename for i in infos if PurePosixPath(i.filename).name == MANIFEST and not i.is_dir()]
            if len(manifests) != 1:
                raise EdgegenError(f"{path}: expected exactly one {MANIFEST} inside the zip, found "
                                   f"{len(manifests) or 'none'}; not an edgegen bundle")
            tmp = Path(tempfile.mkdtemp(prefix=UNPACK_PREFIX))
            try:
                zf.extractall(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as exc:
        raise EdgegenError(f"cannot read or unpack {path} (into {tempfile.gettempdir()}): {exc}") from None
    except (zipfile.BadZipFile, EOFError, NotImplementedError, ValueError) as exc:
        raise EdgegenError(f"{path} is not a readable zip ({exc}); it is corrupt or truncated: copy or export it "
                           "again") from None
    return tmp, tmp / PurePosixPath(manifests[0]).parent


def open_bundle(path: Path, *, check: bool = True) -> Bundle:
    """A verified bundle. A .zip is unpacked into a temporary folder that the Bundle owns: use
    `with open_bundle(p) as b:` (or call `b.close()`) so that it is removed when you are done."""
    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)
        if check:
            verify(path, manifest)
        return Bundle(root=path, manifest=manifest)
    if not path.exists():
        raise EdgegenError(f"bundle not found: {path}")
    if not path.is_file():
        raise EdgegenError(f"{path} is neither a bundle folder nor a .zip file")
    if path.stat().st_size == 0:
        raise EdgegenError(f"{path} is an empty file (0 bytes), not a bundle; copy or export it again")
    if not zipfile.is_zipfile(path):
        raise EdgegenError(f"{path} is not a zip file (corrupt or truncated?) and not a bundle folder; "
                           "give a bundle folder or a .zip made by `edgegen export --zip`")
    tmp, root = _unpack(path)
    try:
        manifest = read_manifest(root)
        if check:
            verify(root, manifest)
    except EdgegenError as exc:  # name the zip, not the temporary folder that is about to vanish
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgegenError(str(exc).replace(str(tmp), str(path))) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle(root=root, manifest=manifest, unpacked=tmp)


def _describe_stream(stream) -> str:
    if stream is None:
        return "whole sequence"
    if stream.stateful:
        return (f"streamed, stateful: windows of {stream.window} latent frames back to back, each frame decoded "
                f"once; audio {stream.delay} samples behind, state {stream.state_size} floats")
    return f"streamed: windows of {stream.window} latent frames, overlap {stream.overlap}"


def describe_bundle(path: Path) -> str:
    with open_bundle(path) as b:  # a zip's unpacked copy is removed again right away
        m = b.manifest
    lines = [f"bundle          {path}  (checksums OK)",
             f"backend         {m.backend} {m.runtime_version}  target {m.target.name}",
             f"recipe          {m.recipe.name}: {m.recipe.description}",
             f"source          {m.source.model}",
             f"audio           {m.sample_rate} Hz, {m.channels} ch, up to {m.max_seconds:.2f} s "
             f"({m.latent_length} latents)",
             f"sampler         {m.sampler.type}, {m.sampler.steps} steps, logSNR "
             f"{m.sampler.logsnr_max} -> {m.sampler.logsnr_min}",
             "decoder         " + _describe_stream(m.decoder_stream),
             f"edgegen         {m.edgegen_version}", "artifacts:"]
    for comp, a in m.artifacts.items():
        ins = ", ".join(f"{i.name} {i.dtype}{list(i.shape)}" for i in a.inputs)
        outs = ", ".join(f"{o.name} {o.dtype}{list(o.shape)}" for o in a.outputs)
        extra = f"  delegated {a.delegated_fraction:.0%}" if a.delegated_fraction is not None else ""
        extra += f"  computes in {a.compute_precision}" if a.compute_precision else ""
        lines.append(f"  {comp:<13}{a.file:<22}{a.size / 1e6:>9.2f} MB{extra}")
        lines.append(f"  {'':<13}({ins}) -> ({outs})")
    return "\n".join(lines)
