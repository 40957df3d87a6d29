"""Bundles: a folder (or .zip) with three artifacts, the tokenizer and a self-describing `manifest.json`.

    with open_bundle(path) as bundle:              # schema and every checksum verified; a .zip is unpacked
        bundle.root, bundle.manifest, bundle.path("dit")
    describe_bundle(path) -> str                   # `edgegen info BUNDLE`

Names of files mean nothing: the manifest says which file is which artifact, its I/O, backend, recipe,
target, source checkpoint and sampler settings.

Reading is strict, and everything is checked before any artifact is opened:
- `manifest.json` is validated against `MANIFEST_SCHEMA` (one declared table, one place): every error names the
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
import math
import os
import re
import shutil
import stat
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edgegen.common import ARTIFACTS, BACKENDS, sha256_file
from edgegen.errors import EdgegenError

# 1: the decoder takes the whole latent sequence. 2: adds `decoder_stream` (window, overlap, hop, receptive_field):
# the decoder artifact takes [1, 64, window] and is run over overlapping windows. 3: `decoder_stream` is stateful
# (mode "stateful", window, hop, delay, state_size): the decoder also takes `position` [2] and `state` [1, S] and
# returns `next_state`, windows follow back to back and the audio runs `delay` samples behind (see
# components/stateful_decoder.py); tools that read only 1 and 2 refuse it by its version. An exporter writes the
# lowest version that describes the bundle, so a whole-sequence bundle stays readable by version-1 tools.
SCHEMA_VERSIONS = (1, 2, 3)
MANIFEST = "manifest.json"
UNPACK_PREFIX = "edgegen-bundle-"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, float) or _is_int(v)) and math.isfinite(v)


def plain_file_name(name) -> bool:
    """A file directly inside the bundle folder: no separators, not `.`/`..`, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0"))


# The manifest schema. A leaf is (what is allowed, check); a dict lists an object's fields (a trailing `?` marks an
# optional one; fields not listed are allowed and ignored); [spec] is a non-empty list of spec; _Components is the
# `artifacts` object. `schema_version` is checked first, on its own (its message says which versions are read).
_POS_INT = ("a positive integer", lambda v: _is_int(v) and v > 0)
_NONNEG_INT = ("an integer >= 0", lambda v: _is_int(v) and v >= 0)
_NUMBER = ("a finite number", _is_number)
_TEXT = ("a string", lambda v: isinstance(v, str))
_OBJECT = ("an object", lambda v: isinstance(v, dict))
_SHA256 = ("64 lowercase hex digits", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None)
_FILE_NAME = ("a plain file name inside the bundle folder (no '/', '\\', '..' or absolute path)", plain_file_name)
_DTYPE = ("one of float32, int32", lambda v: isinstance(v, str) and v in ("float32", "int32"))
_SHAPE = ("a non-empty list of positive integers",
          lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(d) and d > 0 for d in v))
_TENSOR = {"name": _TEXT, "dtype": _DTYPE, "shape": _SHAPE, "index?": _NONNEG_INT}
_FILE = {"file": _FILE_NAME, "sha256": _SHA256, "size": _NONNEG_INT}


@dataclass(frozen=True)
class _Components:
    """An object keyed by artifact names (a subset of ARTIFACTS, at least one), each value matching `entry`."""

    entry: dict


MANIFEST_SCHEMA = {
    "edgegen_version": _TEXT,
    "backend": (f"one of {', '.join(BACKENDS)}", lambda v: isinstance(v, str) and v in BACKENDS),
    "runtime_version": _TEXT,
    "target": {"name": _TEXT, "threads": _POS_INT},
    "recipe": {"name": _TEXT, "components": _OBJECT},
    "source": {"model": _TEXT},
    "sample_rate": _POS_INT,
    "channels": _POS_INT,
    "latent_length": _POS_INT,
    "max_seconds": ("a positive number", lambda v: _is_number(v) and v > 0),
    "sampler": {"type": ("pingpong", lambda v: v == "pingpong"), "steps": _POS_INT, "logsnr_max": _NUMBER,
                "logsnr_min": _NUMBER},
    "tokenizer": {**_FILE, "max_length": _POS_INT, "eos_id": _NONNEG_INT, "pad_id": _NONNEG_INT},
    "artifacts": _Components({**_FILE, "inputs": [_TENSOR], "outputs": [_TENSOR], "schemes?": _OBJECT,
                              "delegated_fraction?": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)}),
    "decoder_stream?": {"window": _POS_INT, "hop": _POS_INT, "overlap?": _NONNEG_INT, "receptive_field?": _NONNEG_INT,
                        "mode?": ("stateful", lambda v: v == "stateful"), "delay?": _NONNEG_INT,
                        "state_size?": _POS_INT},
    # written by `edgegen export` (export/verify.py): the parity figures it checked, or why it did not check
    "verification?": {"verified": ("true or false", lambda v: isinstance(v, bool))},
}


def _describe(spec) -> str:
    if isinstance(spec, dict):
        return "an object with " + ", ".join(k.rstrip("?") for k in spec if not k.endswith("?"))
    if isinstance(spec, list):
        return "a non-empty list of " + _describe(spec[0])
    if isinstance(spec, _Components):
        return f"an object keyed by one or more of {', '.join(ARTIFACTS)}"
    return spec[0]


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _validate(value, spec, where: str, path: Path) -> None:
    """Raise one line naming `path`, the field path `where`, the value and what `spec` allows."""
    def bad(what: str):
        raise EdgegenError(f"{path}: {where} is {_shown(value)}; expected {what} (re-export the bundle)")

    if isinstance(spec, dict):
        if not isinstance(value, dict):
            bad(_describe(spec))
        for key, sub in spec.items():
            name = key.rstrip("?")
            field_path = f"{where}.{name}" if where else name
            if name not in value:
                if not key.endswith("?"):
                    raise EdgegenError(f"{path}: {field_path} is missing; expected {_describe(sub)} "
                                       "(re-export the bundle)")
                continue
            _validate(value[name], sub, field_path, path)
    elif isinstance(spec, list):
        if not isinstance(value, list) or not value:
            bad(_describe(spec))
        for i, item in enumerate(value):
            _validate(item, spec[0], f"{where}[{i}]", path)
    elif isinstance(spec, _Components):
        if not isinstance(value, dict) or not value:
            bad(_describe(spec))
        for comp, entry in value.items():
            if comp not in ARTIFACTS:
                raise EdgegenError(f"{path}: {where} has unknown component {comp!r}; expected one of "
                                   f"{', '.join(ARTIFACTS)} (re-export the bundle)")
            _validate(entry, spec.entry, f"{where}.{comp}", path)
    elif not spec[1](value):
        bad(spec[0])


NO_ENCODER = ("{root} has no encoder artifact, so it cannot start from init audio; re-export it with "
              "`edgegen export --audio-to-audio`")


def init_audio_shape(manifest: dict, root: Path | str) -> list[int]:
    """The encoder artifact's `audio` input shape [1, channels, N] (what init audio is prepared to); a bundle
    without an encoder (`root` names it) is one EdgegenError naming the export flag."""
    if "encoder" not in manifest["artifacts"]:
        raise EdgegenError(NO_ENCODER.format(root=root))
    return next(i for i in manifest["artifacts"]["encoder"]["inputs"] if i["name"] == "audio")["shape"]


def file_entry(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size}


@dataclass(frozen=True)
class Bundle:
    """A verified bundle. `unpacked` is the temporary folder a .zip was unpacked into (None for a folder): the
    Bundle owns it, `close()` (or leaving `with bundle:`) removes it, and so does garbage collection or exit."""

    root: Path
    manifest: dict
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
        return self.root / self.manifest["artifacts"][component]["file"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / self.manifest["tokenizer"]["file"]

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def components(self) -> list[str]:
        """The artifacts this bundle holds, in pipeline order (the encoder last, when exported)."""
        return [c for c in ARTIFACTS if c in self.manifest["artifacts"]]

    @property
    def digest(self) -> str:
        """A short content id: the manifest's sha256 (it names every artifact's sha256)."""
        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(root: Path) -> dict:
    """The manifest in `root`, validated against MANIFEST_SCHEMA (and decoder_stream against the decoder's input)."""
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
    if not isinstance(manifest, dict):
        raise EdgegenError(f"{path}: expected a JSON object")
    version = manifest.get("schema_version")
    if not _is_int(version) or version not in SCHEMA_VERSIONS:
        raise EdgegenError(f"{path}: schema_version {version!r} is not supported by this edgegen "
                           f"(reads {', '.join(map(str, SCHEMA_VERSIONS))}); re-export with this version")
    _validate(manifest, MANIFEST_SCHEMA, "", path)
    for comp, spec in manifest["artifacts"].items():
        call_order(spec["inputs"], where=f"{path}: artifacts.{comp}.inputs")
    _check_stream(path, manifest)
    return manifest


def call_order(inputs: list[dict], *, where: str = "manifest inputs") -> list[dict]:
    """An artifact's inputs in the order its call takes them: by each input's `index` (written at export), else in
    list order (manifests from before `index`). The native runner (android_demo/runner/src/bundle.cpp) does the same."""
    names = [i["name"] for i in inputs]
    if len(set(names)) != len(names):
        raise EdgegenError(f"{where} {names} repeat a name; re-export the bundle")
    if not any("index" in i for i in inputs):
        return list(inputs)
    idx = [i.get("index") for i in inputs]
    if not all(type(k) is int for k in idx) or sorted(idx) != list(range(len(inputs))):
        raise EdgegenError(f"{where} {names} have index {idx}: every input needs one, numbering them "
                           f"0..{len(inputs) - 1}; re-export the bundle")
    return sorted(inputs, key=lambda i: i["index"])


def _check_stream(path: Path, manifest: dict) -> None:
    """`decoder_stream` appears exactly in version-2 and -3 manifests (overlapped windows in 2, stateful in 3) and
    agrees with the decoder's declared inputs."""
    stream, version = manifest.get("decoder_stream"), manifest["schema_version"]
    if (stream is not None) != (version >= 2):
        raise EdgegenError(f"{path}: decoder_stream must be present exactly when schema_version >= 2; re-export")
    if stream is None:
        return
    window, hop = stream["window"], stream["hop"]
    dec = manifest["artifacts"].get("decoder")
    if version == 3:
        missing = [k for k in ("mode", "delay", "state_size") if k not in stream]
        if missing:
            raise EdgegenError(f"{path}: a schema-3 decoder_stream needs mode \"stateful\", delay and state_size "
                               f"(missing {', '.join(missing)}); re-export")
        if dec is not None:
            want = {"latents": [1, None, window], "position": [2], "state": [1, stream["state_size"]]}
            got = {i["name"]: i["shape"] for i in dec["inputs"]}
            for name, shape in want.items():
                if name not in got or any(w is not None and w != g for w, g in zip(shape, got[name])) \
                        or len(shape) != len(got[name]):
                    raise EdgegenError(f"{path}: the stateful decoder needs input {name} of shape "
                                       f"{[d if d is not None else 'C' for d in shape]} (decoder_stream: window "
                                       f"{window}, state_size {stream['state_size']}), the manifest lists "
                                       f"{got.get(name, 'none')}; re-export the bundle")
            outs = {o["name"]: o["shape"] for o in dec["outputs"]}
            if outs.get("next_state") != [1, stream["state_size"]] or "audio" not in outs:
                raise EdgegenError(f"{path}: the stateful decoder needs outputs audio and next_state [1, "
                                   f"{stream['state_size']}], the manifest lists {sorted(outs)}; re-export the bundle")
        return
    if "overlap" not in stream or "mode" in stream:
        raise EdgegenError(f"{path}: a schema-2 decoder_stream has window, overlap and hop (a stateful one needs "
                           "schema_version 3); re-export")
    overlap = stream["overlap"]
    if window <= 2 * overlap or hop < 1:
        raise EdgegenError(f"{path}: decoder_stream window {window} must exceed 2 x overlap {overlap}; re-export")
    if dec is not None and dec["inputs"][0]["shape"][-1] != window:
        raise EdgegenError(f"{path}: the decoder takes {dec['inputs'][0]['shape'][-1]} latent frames but "
                           f"decoder_stream.window is {window}; re-export the bundle")


def verify(root: Path, manifest: dict) -> None:
    """Every artifact and the tokenizer exist with the size and sha256 the manifest records.

    Their names were checked by read_manifest (plain file names); a symlink that leads out of the bundle is refused
    before it is followed (one to another file of the bundle is fine, as in the native runner)."""
    entries = [(f"artifact {c}", e) for c, e in manifest["artifacts"].items()] + [("tokenizer", manifest["tokenizer"])]
    for what, entry in entries:
        if not plain_file_name(entry["file"]):  # read_manifest refuses these; never follow one out of the bundle
            raise EdgegenError(f"{root}: {what} file {entry['file']!r} is not a plain file name in the bundle")
        path = root / entry["file"]
        if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
            raise EdgegenError(f"{root}: {what} file {entry['file']} is a symlink out of the bundle; a bundle's files "
                               "must be inside its folder: copy the file in (or re-export the bundle)")
        if not path.exists():
            raise EdgegenError(f"{root}: {what} file {entry['file']} is missing")
        if not path.is_file():
            raise EdgegenError(f"{root}: {what} file {entry['file']} is not a regular file")
        if path.stat().st_size != entry["size"]:
            raise EdgegenError(f"{root}: {what} {entry['file']} is {path.stat().st_size} bytes, manifest says "
                               f"{entry['size']}: the bundle is corrupt; re-export it")
        if sha256_file(path) != entry["sha256"]:
            raise EdgegenError(f"{root}: {what} {entry['file']} fails its sha256 check: the bundle is corrupt; "
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


def _describe_stream(stream: dict | None) -> str:
    if stream is None:
        return "whole sequence"
    if stream.get("mode") == "stateful":
        return (f"streamed, stateful: windows of {stream['window']} latent frames back to back, each frame decoded "
                f"once; audio {stream['delay']} samples behind, state {stream['state_size']} floats")
    return f"streamed: windows of {stream['window']} latent frames, overlap {stream['overlap']}"


def describe_bundle(path: Path) -> str:
    with open_bundle(path) as b:  # a zip's unpacked copy is removed again right away
        m = b.manifest
    lines = [f"bundle          {path}  (checksums OK)",
             f"backend         {m['backend']} {m['runtime_version']}  target {m['target'].get('name')}",
             f"recipe          {m['recipe'].get('name')}: {m['recipe'].get('description', '')}",
             f"source          {m['source'].get('model')}",
             f"audio           {m['sample_rate']} Hz, {m['channels']} ch, up to {m['max_seconds']:.2f} s "
             f"({m['latent_length']} latents)",
             f"sampler         {m['sampler']['type']}, {m['sampler']['steps']} steps, logSNR "
             f"{m['sampler']['logsnr_max']} -> {m['sampler']['logsnr_min']}",
             "decoder         " + _describe_stream(m.get("decoder_stream")),
             f"edgegen         {m['edgegen_version']}", "artifacts:"]
    for comp, a in m["artifacts"].items():
        ins = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in a["inputs"])
        outs = ", ".join(f"{o['name']} {o['dtype']}{o['shape']}" for o in a["outputs"])
        extra = f"  delegated {a['delegated_fraction']:.0%}" if "delegated_fraction" in a else ""
        lines.append(f"  {comp:<13}{a['file']:<22}{a['size'] / 1e6:>9.2f} MB{extra}")
        lines.append(f"  {'':<13}({ins}) -> ({outs})")
    return "\n".join(lines)

