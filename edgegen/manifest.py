"""A bundle's `manifest.json` as a frozen `Manifest`: what `edgegen export` writes, what every reader reads.

    m = Manifest.from_json(json.loads(text), path=p)    # checked against MANIFEST_SCHEMA first; EdgegenError if bad
    m.backend, m.target.threads, m.artifacts["dit"].inputs[0].shape, m.sampler.steps, m.decoder_stream
    json.dumps(m.to_json(), indent=2)                    # the same JSON, key for key and in the same order

The JSON keys are the contract with the native runner (android_demo/runner/src/bundle.cpp) and stay as they are;
the attribute names are the keys. `target` and `recipe` are the `Target` and `Recipe` the bundle was exported with.

Schema (edgegen.schema: a trailing `?` marks an optional key). Unknown keys are refused, naming the key and the
manifest: edgegen writes every manifest itself, so a key this reader does not declare comes from a newer edgegen or
a hand edit, and ignoring it would drop what it means silently. The format evolves through `schema_version`: a
reader refuses a version it does not know, so a new key comes with a new version (which exporters write only for
bundles that use it). Keys that earlier edgegen versions did not write under the same version are optional
(`index` of an input, `source.t5_precision`, a rule's `backend`, `verification`, `delegated_fraction`,
`compute_precision`), so the
bundles they exported still open.

`schema_version` 1: the decoder takes the whole latent sequence. 2: adds `decoder_stream` (window, overlap, hop,
receptive_field): the decoder artifact takes [1, 64, window] and is run over overlapping windows. 3:
`decoder_stream` is stateful (mode "stateful", window, hop, delay, state_size): the decoder also takes `position`
[2] and `state` [1, S] and returns `next_state`, windows follow back to back and the audio runs `delay` samples
behind (see components/stateful_decoder.py); tools that read only 1 and 2 refuse it by its version. An exporter
writes the lowest version that describes the bundle, so a whole-sequence bundle stays readable by version-1 tools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

from edgegen.common import ARTIFACTS, BACKENDS
from edgegen.errors import EdgegenError
from edgegen.recipes import ComponentRecipe, Recipe, Rule, Target
from edgegen.schema import (MISSING, Field, Keyed, SchemaProblem, UnknownKeys, is_int, is_number, show,
                            validate)

SCHEMA_VERSIONS = (1, 2, 3)


def plain_file_name(name) -> bool:
    """A file directly inside the bundle folder: no separators, not `.`/`..`, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0"))


_POS_INT = Field("a positive integer", lambda v: is_int(v) and v > 0)
_NONNEG_INT = Field("an integer >= 0", lambda v: is_int(v) and v >= 0)
_NUMBER = Field("a finite number", is_number)
_TEXT = Field("a string", lambda v: isinstance(v, str))
_TEXT_OR_NULL = Field("a string or null", lambda v: v is None or isinstance(v, str))
_BOOL = Field("true or false", lambda v: isinstance(v, bool))
_OBJECT = Field("an object", lambda v: isinstance(v, dict))
_SHA256 = Field("64 lowercase hex digits", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None)
_FILE_NAME = Field("a plain file name inside the bundle folder (no '/', '\\', '..' or absolute path)", plain_file_name)
_DTYPE = Field("one of float32, int32", lambda v: isinstance(v, str) and v in ("float32", "int32"))
_SHAPE = Field("a non-empty list of positive integers",
               lambda v: isinstance(v, list) and len(v) > 0 and all(is_int(d) and d > 0 for d in v))
_BACKEND = Field(f"one of {', '.join(BACKENDS)}", lambda v: isinstance(v, str) and v in BACKENDS)
_TENSOR = {"name": _TEXT, "dtype": _DTYPE, "shape": _SHAPE, "index?": _NONNEG_INT}
_FILE = {"file": _FILE_NAME, "sha256": _SHA256, "size": _NONNEG_INT}
_RULE = {"pattern": _TEXT, "scheme": _TEXT, "group_size": _POS_INT, "fallback": _TEXT_OR_NULL,
         "backend?": Field(f"null or one of {', '.join(BACKENDS)}", lambda v: v is None or v in BACKENDS)}

MANIFEST_SCHEMA = {
    "schema_version": Field(f"one of {', '.join(map(str, SCHEMA_VERSIONS))}", lambda v: is_int(v)
                            and v in SCHEMA_VERSIONS),
    "edgegen_version": _TEXT,
    "backend": _BACKEND,
    "runtime_version": _TEXT,
    "target": {"name": _TEXT, "description": _TEXT, "backend": _BACKEND, "abi": _TEXT, "threads": _POS_INT,
               "fp16_compute": _BOOL, "xnnpack_flags": Field("a list of strings", lambda v: isinstance(v, list)
                                                             and all(isinstance(f, str) for f in v)),
               "min_api_level": Field("null or a positive integer", lambda v: v is None or (is_int(v) and v > 0))},
    "recipe": {"name": _TEXT, "description": _TEXT,
               "components": Keyed(ARTIFACTS, {"rules": [_RULE], "sqnr_floor_db": Field(
                   "null or a finite number", lambda v: v is None or is_number(v))})},
    "source": {"model": _TEXT, "config_sha256?": _TEXT, "checkpoint_sha256?": _TEXT, "t5?": _TEXT,
               "t5_precision?": _TEXT},
    "sample_rate": _POS_INT,
    "channels": _POS_INT,
    "latent_length": _POS_INT,
    "max_seconds": Field("a positive number", lambda v: is_number(v) and v > 0),
    "sampler": {"type": Field("pingpong", lambda v: v == "pingpong"), "steps": _POS_INT, "logsnr_max": _NUMBER,
                "logsnr_min": _NUMBER},
    "tokenizer": {**_FILE, "max_length": _POS_INT, "eos_id": _NONNEG_INT, "pad_id": _NONNEG_INT},
    "artifacts": Keyed(ARTIFACTS, {**_FILE, "inputs": [_TENSOR], "outputs": [_TENSOR], "schemes?": _OBJECT,
                                   "compute_precision?": Field("fp32 or fp16", lambda v: v in ("fp32", "fp16")),
                                   "delegated_fraction?": Field("a number in [0, 1]",
                                                                lambda v: is_number(v) and 0 <= v <= 1)}),
    "decoder_stream?": {"mode?": Field("stateful", lambda v: v == "stateful"), "window": _POS_INT,
                        "overlap?": _NONNEG_INT, "hop": _POS_INT, "delay?": _NONNEG_INT, "state_size?": _POS_INT,
                        "receptive_field?": _NONNEG_INT},
    # written by `edgegen export` (export/verify.py): the parity figures it checked, or why it did not check. A
    # record for people: `verified` is checked, the rest is kept as written
    "verification?": _OBJECT,
}


def _json(value):
    """An object with `to_json`, a tuple or a dict as JSON data (tuples as lists)."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _fields_json(obj, optional: tuple[str, ...] = ()) -> dict:
    return {f.name: _json(getattr(obj, f.name)) for f in fields(obj)
            if not (f.name in optional and getattr(obj, f.name) is None)}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an artifact. `index`: an input's position in the call (None: a manifest from before
    `index`, whose inputs are listed in call order; outputs have none)."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    index: int | None = None

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]), index=d.get("index"))

    def to_json(self) -> dict:
        return _fields_json(self, ("index",))


@dataclass(frozen=True)
class ArtifactEntry:
    """An artifact file and its call signature; `schemes` counts the layers per quantization scheme;
    `compute_precision` the float precision the profile and recipe set it to compute in ("fp16": on a CPU with fp16
    arithmetic, through FORCE_FP16 for LiteRT or a cast to half at export for ExecuTorch; see edgegen.xnnpack)."""
    file: str
    sha256: str
    size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    schemes: dict[str, int] | None = None
    compute_precision: str | None = None
    delegated_fraction: float | None = None

    @classmethod
    def from_json(cls, d: dict) -> "ArtifactEntry":
        return cls(file=d["file"], sha256=d["sha256"], size=d["size"],
                   inputs=tuple(TensorSpec.from_json(i) for i in d["inputs"]),
                   outputs=tuple(TensorSpec.from_json(o) for o in d["outputs"]),
                   schemes=d.get("schemes"), compute_precision=d.get("compute_precision"),
                   delegated_fraction=d.get("delegated_fraction"))

    def to_json(self) -> dict:
        return _fields_json(self, ("schemes", "compute_precision", "delegated_fraction"))

    def input(self, name: str) -> TensorSpec | None:
        return next((i for i in self.inputs if i.name == name), None)


@dataclass(frozen=True)
class TokenizerEntry:
    file: str
    sha256: str
    size: int
    max_length: int
    eos_id: int
    pad_id: int

    def to_json(self) -> dict:
        return _fields_json(self)


@dataclass(frozen=True)
class Source:
    """Where the bundle came from (`Pipeline.source`): the model name and the hashes parity compares (None: not
    recorded, and left out of the JSON)."""
    model: str
    config_sha256: str | None = None
    checkpoint_sha256: str | None = None
    t5: str | None = None
    t5_precision: str | None = None

    def to_json(self) -> dict:
        return _fields_json(self, ("config_sha256", "checkpoint_sha256", "t5", "t5_precision"))


@dataclass(frozen=True)
class SamplerSpec:
    type: str
    steps: int
    logsnr_max: float
    logsnr_min: float

    def to_json(self) -> dict:
        return _fields_json(self)


@dataclass(frozen=True)
class DecoderStream:
    """How a streamed decoder runs: `mode` "stateful" (schema 3: back-to-back windows, `delay`, `state_size`) or None
    (schema 2: overlapping windows, `overlap`). Windows and overlaps count latent frames, `hop` samples per frame."""
    window: int
    hop: int
    mode: str | None = None
    overlap: int | None = None
    delay: int | None = None
    state_size: int | None = None
    receptive_field: int | None = None

    @property
    def stateful(self) -> bool:
        return self.mode == "stateful"

    def to_json(self) -> dict:
        # the order export has always written: mode first for a stateful stream, overlap after the window otherwise
        order = (("mode", "window", "hop", "delay", "state_size", "receptive_field") if self.stateful
                 else ("window", "overlap", "hop", "mode", "delay", "state_size", "receptive_field"))
        return {k: getattr(self, k) for k in order if getattr(self, k) is not None}


def _target(d: dict) -> Target:
    return Target(**{**d, "xnnpack_flags": tuple(d["xnnpack_flags"])})


def _recipe(d: dict) -> Recipe:
    comps = {c: ComponentRecipe(rules=tuple(Rule(**r) for r in spec["rules"]), sqnr_floor_db=spec["sqnr_floor_db"])
             for c, spec in d["components"].items()}
    return Recipe(name=d["name"], description=d["description"], components=comps)


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    edgegen_version: str
    backend: str
    runtime_version: str
    target: Target
    recipe: Recipe
    source: Source
    sample_rate: int
    channels: int
    latent_length: int
    max_seconds: float
    sampler: SamplerSpec
    tokenizer: TokenizerEntry
    artifacts: dict[str, ArtifactEntry]
    decoder_stream: DecoderStream | None = None
    verification: dict | None = None

    @classmethod
    def from_json(cls, d, *, path: Path | str = "manifest.json") -> "Manifest":
        """The manifest in `d` (parsed JSON) after checking it against MANIFEST_SCHEMA; every problem is one
        EdgegenError naming `path`, the field path, the value and what is allowed."""
        check(d, path)
        return cls(
            schema_version=d["schema_version"], edgegen_version=d["edgegen_version"], backend=d["backend"],
            runtime_version=d["runtime_version"], target=_target(d["target"]), recipe=_recipe(d["recipe"]),
            source=Source(**d["source"]), sample_rate=d["sample_rate"], channels=d["channels"],
            latent_length=d["latent_length"], max_seconds=d["max_seconds"], sampler=SamplerSpec(**d["sampler"]),
            tokenizer=TokenizerEntry(**d["tokenizer"]),
            artifacts={c: ArtifactEntry.from_json(a) for c, a in d["artifacts"].items()},
            decoder_stream=DecoderStream(**d["decoder_stream"]) if "decoder_stream" in d else None,
            verification=d.get("verification"))

    def to_json(self) -> dict:
        out = _fields_json(self, ("decoder_stream", "verification"))
        out["target"], out["recipe"] = _json(self.target.to_json()), _json(self.recipe.to_json())  # tuples as lists
        return out

    @property
    def components(self) -> list[str]:
        """The artifacts this bundle holds, in pipeline order (the encoder last, when exported)."""
        return [c for c in ARTIFACTS if c in self.artifacts]

    @property
    def latent_shape(self) -> tuple[int, ...] | None:
        """(64, T): the DiT's `x` input without the batch, or None when the bundle has no DiT."""
        x = self.artifacts["dit"].input("x") if "dit" in self.artifacts else None
        return None if x is None else tuple(x.shape[1:])


def check(d, path: Path | str) -> None:
    """`d` (parsed JSON) against MANIFEST_SCHEMA: `schema_version` first, on its own (its message says which
    versions this edgegen reads), then every field. One EdgegenError naming `path`, the field, the value and what
    is allowed."""
    if not isinstance(d, dict):
        raise EdgegenError(f"{path}: expected a JSON object")
    version = d.get("schema_version")
    if not is_int(version) or version not in SCHEMA_VERSIONS:
        raise EdgegenError(f"{path}: schema_version {version!r} is not supported by this edgegen "
                           f"(reads {', '.join(map(str, SCHEMA_VERSIONS))}); re-export with this version")
    try:
        validate(d, MANIFEST_SCHEMA)
        if "verification" in d:
            validate(d["verification"].get("verified", MISSING), Field("true or false", lambda v: isinstance(v, bool)),
                     "verification.verified")
    except SchemaProblem as p:
        if p.missing:
            raise EdgegenError(f"{path}: {p.where} is missing; expected {p.allowed} (re-export the bundle)") from None
        raise EdgegenError(f"{path}: {p.where} is {show(p.value)}; expected {p.allowed} (re-export the bundle)") \
            from None
    except UnknownKeys as u:
        if u.where == "artifacts":
            raise EdgegenError(f"{path}: artifacts has unknown component {u.keys[0].split('.', 1)[1]!r}; expected one "
                               f"of {', '.join(ARTIFACTS)} (re-export the bundle)") from None
        raise EdgegenError(f"{path}: {u}: this edgegen (schema_version {', '.join(map(str, SCHEMA_VERSIONS))}) does "
                           "not know it; re-export the bundle with this edgegen, or read it with the edgegen that "
                           "wrote it") from None
