"""Quantization recipes and target profiles: data files read into small frozen dataclasses.

A recipe (`quantize/*.toml`) holds, per component, ordered rules `module-path pattern -> scheme`; the first
match wins. Schemes: "fp32", "fp16" (whole component; `fallback` applies where the target has no fp16
compute), "int8" (per-channel int8 weights, dynamic int8 activations: speed and size), "int8w" (per-channel
int8 weights dequantized to fp32 compute: size only, float activations), "int4" (group-wise int4 weights,
dynamic int8 activations, `group_size` default 32). Each quantized component states the SQNR floor (dB)
that parity gates on; fp32 components gate at 1e-4 relative error instead. `[components.encoder]` (the VAE
encoder of an `--audio-to-audio` export) is optional: a recipe without it keeps the encoder fp32.

    recipe = load_recipe("int8")            # or a path to a .toml
    target = load_target("host-executorch")
    check_supported(recipe, target)         # raises in milliseconds, naming the nearest supported row
    recipe.rule_for("dit", "transformer.layers.3.ff.ff.0.proj", target)  -> the first matching Rule (or None)

Both file kinds are checked against a declared schema when read (`RECIPE_SCHEMA`, `COMPONENT_SCHEMA`,
`RULE_SCHEMA`, `TARGET_SCHEMA`): a missing, unknown or ill-typed / out-of-range field is one EdgegenError
naming the file, the field, the value and what is allowed, before anything uses it.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from edgegen.common import ARTIFACTS, BACKENDS, COMPONENTS
from edgegen.errors import EdgegenError
from edgegen.schema import Field, SchemaProblem, UnknownKeys, check_table, is_int, is_number, is_text, show

ROOT = Path(__file__).resolve().parent.parent
RECIPE_DIR = ROOT / "quantize"
TARGET_DIR = ROOT / "export_targets"
SCHEMES = ("fp32", "fp16", "int8", "int8w", "int4")
QUANTIZED_SCHEMES = ("int8", "int8w", "int4")  # the schemes that change a component's weights
FP32_REL_TOL = 1e-4


@dataclass(frozen=True)
class Rule:
    pattern: str
    scheme: str
    group_size: int = 32
    fallback: str | None = None
    backend: str | None = None  # the rule applies only when exporting for this backend (None: every backend)

    def matches(self, fqn: str) -> bool:
        return fnmatch.fnmatchcase(fqn, self.pattern)

    @property
    def granularity(self) -> str:
        return {"int8": "per_channel", "int8w": "per_channel", "int4": f"group{self.group_size}"}.get(self.scheme, "-")


@dataclass(frozen=True)
class ComponentRecipe:
    rules: tuple[Rule, ...]
    sqnr_floor_db: float | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    components: dict[str, ComponentRecipe]

    def resolved_rules(self, component: str, target: "Target") -> tuple[Rule, ...]:
        """The component's rules for `target`: rules of another backend dropped, fp16 replaced by its fallback where
        the target has no fp16 compute."""
        out = []
        for rule in self.components[component].rules:
            if rule.backend not in (None, target.backend):
                continue
            if rule.scheme == "fp16" and not target.fp16_compute:
                rule = Rule(rule.pattern, rule.fallback or "fp32", rule.group_size)
            out.append(rule)
        return tuple(out)

    def rule_for(self, component: str, fqn: str, target: "Target") -> Rule | None:
        return next((r for r in self.resolved_rules(component, target) if r.matches(fqn)), None)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str
    abi: str
    threads: int
    fp16_compute: bool
    xnnpack_flags: tuple[str, ...] = ()
    min_api_level: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _is_table(v) -> bool:
    return isinstance(v, dict)


_NAME = Field("a non-empty string", is_text)
_DESCRIPTION = Field("a string", lambda v: isinstance(v, str))

# the keys each table may hold (see edgegen.schema: a trailing `?` marks an optional one, any other key is refused)
RECIPE_SCHEMA = {
    "name?": _NAME,
    "description?": _DESCRIPTION,
    "components": Field("a [components] table with [components.text_encoder], [components.dit] and "
                        "[components.decoder]", _is_table),
}
COMPONENT_SCHEMA = {
    "rules": Field('a non-empty array of rule tables such as [{ pattern = "*", scheme = "int8" }]',
                   lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(r, dict) for r in v)),
    "sqnr_floor_db?": Field("a number of dB above 0 and at most 200", lambda v: is_number(v) and 0 < v <= 200),
}
RULE_SCHEMA = {
    "pattern": Field("a non-empty module-path glob such as \"*\" or \"*.ff.*\"", is_text),
    "scheme": Field(f"one of {', '.join(SCHEMES)}", lambda v: v in SCHEMES),
    "group_size?": Field("a positive integer (the int4 groups supported: 32, 64, 128, 256)",
                         lambda v: is_int(v) and v >= 1),
    "fallback?": Field("one of fp32, int8, int4 (used where the target has no fp16 compute)",
                       lambda v: v in ("fp32", "int8", "int4")),
    "backend?": Field(f"one of {', '.join(BACKENDS)} (the rule then applies only to that backend's exports)",
                      lambda v: v in BACKENDS),
}
TARGET_SCHEMA = {
    "name?": _NAME,
    "description?": _DESCRIPTION,
    "backend": Field(f"one of {', '.join(BACKENDS)}", lambda v: v in BACKENDS),
    "abi": Field("a non-empty string such as \"arm64-v8a\" or \"x86_64\"", is_text),
    "threads": Field("an integer from 1 to 256", lambda v: is_int(v) and 1 <= v <= 256),
    "fp16_compute": Field("true or false", lambda v: isinstance(v, bool)),
    "xnnpack_flags?": Field('an array of flag names such as ["QS8", "DYNAMIC_FULLY_CONNECTED"]',
                            lambda v: isinstance(v, list) and all(isinstance(f, str) and re.fullmatch(r"[A-Z0-9_]+", f)
                                                                  for f in v)),
    "min_api_level?": Field("an integer from 1 to 100", lambda v: is_int(v) and 1 <= v <= 100),
}


class _Reader:
    """Checks the tables of one TOML file against their schemas; every error names the file and the field."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind

    def error(self, what: str) -> EdgegenError:
        return EdgegenError(f"{self.kind} {self.path}: {what}")

    def table(self, table: dict, schema: dict[str, Field], where: str = "") -> dict:
        try:
            return check_table(table, schema, where=where)
        except UnknownKeys as exc:
            raise self.error(str(exc)) from None
        except SchemaProblem as p:
            if p.missing:
                raise self.error(f"{p.where} is missing: expected {p.allowed}") from None
            raise self.error(f"{p.where} = {show(p.value)} is not allowed: expected {p.allowed}") from None

    def read(self) -> dict:
        try:
            return tomllib.loads(self.path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise self.error(f"invalid TOML ({exc})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(f"cannot be read as a text file ({exc})") from None


def _resolve(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml":
        if p.is_file():
            return p
        raise EdgegenError(f"{kind} file {p} not found")
    candidate = folder / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(f.stem for f in folder.glob("*.toml")))
    raise EdgegenError(f"unknown {kind} {name_or_path!r}: choose one of {known} or give a .toml path")


def _read_rule(rd: _Reader, raw: dict, where: str) -> Rule:
    rd.table(raw, RULE_SCHEMA, where)
    rule = Rule(pattern=raw["pattern"], scheme=raw["scheme"], group_size=raw.get("group_size", 32),
                fallback=raw.get("fallback"), backend=raw.get("backend"))
    if rule.fallback is not None and rule.scheme != "fp16":
        raise rd.error(f"{where}.fallback = {show(rule.fallback)} is not allowed: a fallback applies only to an "
                       "fp16 rule")
    if "group_size" in raw and "int4" not in (rule.scheme, rule.fallback):
        raise rd.error(f"{where}.group_size = {show(rule.group_size)} is not allowed: group_size applies only to "
                       "int4 rules")
    if rule.scheme == "fp16" and rule.pattern != "*":
        raise rd.error(f"{where}.pattern = {show(rule.pattern)} is not allowed: fp16 applies to a whole component; "
                       "use pattern \"*\"")
    return rule


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = _resolve(name_or_path, RECIPE_DIR, "recipe")
    rd = _Reader(path, "recipe")
    raw = rd.table(rd.read(), RECIPE_SCHEMA)
    comps = rd.table(raw["components"], {c + ("" if c in COMPONENTS else "?"): Field(
        f"a [components.{c}] table with rules = [...]", _is_table) for c in ARTIFACTS}, "components")
    parsed = {}
    for comp in ARTIFACTS:
        where = f"components.{comp}"
        if comp not in comps:  # the encoder is optional in a recipe: it runs once per generation, fp32 unless said
            parsed[comp] = ComponentRecipe(rules=(Rule("*", "fp32"),))
            continue
        c = rd.table(comps[comp], COMPONENT_SCHEMA, where)
        rules = tuple(_read_rule(rd, r, f"{where}.rules[{i}]") for i, r in enumerate(c["rules"]))
        floor = c.get("sqnr_floor_db")
        if floor is None and any(r.scheme != "fp32" for r in rules):
            raise rd.error(f"{where}.sqnr_floor_db is missing: quantized components must state sqnr_floor_db "
                           "(dB) for parity")
        parsed[comp] = ComponentRecipe(rules=rules, sqnr_floor_db=None if floor is None else float(floor))
    return Recipe(name=raw.get("name", path.stem), description=raw.get("description", ""), components=parsed)


def load_target(name_or_path: str | Path) -> Target:
    path = _resolve(name_or_path, TARGET_DIR, "target")
    rd = _Reader(path, "target")
    raw = rd.table(rd.read(), TARGET_SCHEMA)
    return Target(**{"name": path.stem, "description": "", **raw,
                     "xnnpack_flags": tuple(raw.get("xnnpack_flags", ()))})


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def target_names() -> list[str]:
    return sorted(p.stem for p in TARGET_DIR.glob("*.toml"))
