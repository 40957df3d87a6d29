"""Quantization recipes and target profiles: data files read into small frozen dataclasses.

A recipe (`quantize/*.toml`) holds, per component, ordered rules `module-path pattern -> scheme`; the first
match wins. Schemes: "fp32", "fp16" (whole component; `fallback` applies where the target has no fp16
compute), "int8" (per-channel int8 weights, dynamic int8 activations), "int4" (group-wise int4 weights,
dynamic int8 activations, `group_size` default 32). Each quantized component states the SQNR floor (dB)
that parity gates on; fp32 components gate at 1e-4 relative error instead.

    recipe = load_recipe("int8")            # or a path to a .toml
    target = load_target("host-executorch")
    check_supported(recipe, target)         # raises in milliseconds, naming the nearest supported row
    recipe.scheme_for("dit", "transformer.layers.3.ff.ff.0.proj", target)  -> Rule
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from edgegen.errors import EdgegenError

ROOT = Path(__file__).resolve().parent.parent
RECIPE_DIR = ROOT / "quantize"
TARGET_DIR = ROOT / "export_targets"
COMPONENTS = ("text_encoder", "dit", "decoder")
SCHEMES = ("fp32", "fp16", "int8", "int4")
FP32_REL_TOL = 1e-4


@dataclass(frozen=True)
class Rule:
    pattern: str
    scheme: str
    group_size: int = 32
    fallback: str | None = None

    def matches(self, fqn: str) -> bool:
        return fnmatch.fnmatchcase(fqn, self.pattern)

    @property
    def granularity(self) -> str:
        return {"int8": "per_channel", "int4": f"group{self.group_size}"}.get(self.scheme, "-")


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
        """The component's rules with fp16 replaced by its fallback where the target has no fp16 compute."""
        out = []
        for rule in self.components[component].rules:
            if rule.scheme == "fp16" and not target.fp16_compute:
                rule = Rule(rule.pattern, rule.fallback or "fp32", rule.group_size)
            out.append(rule)
        return tuple(out)

    def rule_for(self, component: str, fqn: str, target: "Target") -> Rule | None:
        return next((r for r in self.resolved_rules(component, target) if r.matches(fqn)), None)

    def is_float(self, component: str, target: "Target") -> bool:
        return all(r.scheme == "fp32" for r in self.resolved_rules(component, target))

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


def _read_toml(path: Path, kind: str) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgegenError(f"{kind} {path}: invalid TOML ({exc})") from None


def _resolve(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    candidate = folder / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(f.stem for f in folder.glob("*.toml")))
    raise EdgegenError(f"unknown {kind} {name_or_path!r}: choose one of {known} or give a .toml path")


def _reject_unknown(d: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise EdgegenError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = _resolve(name_or_path, RECIPE_DIR, "recipe")
    raw = _read_toml(path, "recipe")
    _reject_unknown(raw, {"name", "description", "components"}, str(path))
    comps = raw.get("components", {})
    _reject_unknown(comps, set(COMPONENTS), f"{path} [components]")
    parsed = {}
    for comp in COMPONENTS:
        c = comps.get(comp, {"rules": [{"pattern": "*", "scheme": "fp32"}]})
        _reject_unknown(c, {"rules", "sqnr_floor_db"}, f"{path} [components.{comp}]")
        rules = []
        for r in c.get("rules", []):
            _reject_unknown(r, {"pattern", "scheme", "group_size", "fallback"}, f"{path} {comp} rule")
            rule = Rule(pattern=r["pattern"], scheme=r["scheme"], group_size=int(r.get("group_size", 32)),
                        fallback=r.get("fallback"))
            if rule.scheme not in SCHEMES or (rule.fallback and rule.fallback not in SCHEMES):
                raise EdgegenError(f"{path} {comp}: unknown scheme {rule.scheme!r} (choose from {', '.join(SCHEMES)})")
            if rule.scheme == "fp16" and rule.pattern != "*":
                raise EdgegenError(f"{path} {comp}: fp16 applies to a whole component; use pattern '*'")
            rules.append(rule)
        floor = c.get("sqnr_floor_db")
        if floor is None and any(r.scheme != "fp32" for r in rules):
            raise EdgegenError(f"{path} {comp}: quantized components must state sqnr_floor_db for parity")
        parsed[comp] = ComponentRecipe(rules=tuple(rules), sqnr_floor_db=floor)
    return Recipe(name=raw.get("name", path.stem), description=raw.get("description", ""), components=parsed)


def load_target(name_or_path: str | Path) -> Target:
    path = _resolve(name_or_path, TARGET_DIR, "target")
    raw = _read_toml(path, "target")
    allowed = set(Target.__dataclass_fields__)
    _reject_unknown(raw, allowed, str(path))
    if raw.get("backend") not in ("executorch", "litert"):
        raise EdgegenError(f"{path}: backend must be 'executorch' or 'litert', got {raw.get('backend')!r}")
    raw["xnnpack_flags"] = tuple(raw.get("xnnpack_flags", ()))
    return Target(**raw)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def target_names() -> list[str]:
    return sorted(p.stem for p in TARGET_DIR.glob("*.toml"))
