"""Field checks for the files edgegen reads: one declared table per file kind, one policy for keys it does not know.

    check_table(table, {"name": Field("a string", is_text), "size?": Field("an integer >= 0", is_nonneg_int)},
                where="tokenizer")                  # raises SchemaProblem(where, value, allowed) or UnknownKeys
    validate(value, spec, where="")                 # the same, recursively: a table, [spec] (a non-empty list),
                                                    # Keyed(names, spec) (an object keyed by some of `names`)

A table lists its keys; a trailing `?` marks an optional one. Policy for unknown keys: **refused**, naming the key
and the keys allowed there. edgegen reads two kinds of file this way, and both are its own: recipes and targets
(TOML, written by people for edgegen) and bundle manifests (JSON, written by `edgegen export`). A key nobody
declared is a typo or a file from a newer edgegen, and ignoring it would drop what it meant silently; a manifest's
`schema_version` is what evolves the format (a reader refuses a version it does not know, and keys that older
exports lack are optional). Files edgegen does not own (an upstream `model_config.json`) are read by `config.py`,
which checks the fields it uses and leaves the rest alone.

Callers word the problem for their file kind (`recipes.py`: `key = value is not allowed: expected ...`,
`bundle.py`: `field is value; expected ...`), always naming the file, the field path, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A finite int or float (not a bool)."""
    return (isinstance(v, float) or is_int(v)) and math.isfinite(v)


def is_text(v) -> bool:
    """A non-empty string (not only spaces)."""
    return isinstance(v, str) and v.strip() != ""


def show(value) -> str:
    """`value` as it reads in JSON (and TOML, for scalars), cut to 60 characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Field:
    """One key's value: `allowed` says in words what it must be (shown in errors), `ok` tests it."""
    allowed: str
    ok: Callable[[object], bool]


@dataclass(frozen=True)
class Keyed:
    """An object keyed by one or more of `names`, each value matching `entry`."""
    names: tuple[str, ...]
    entry: object


class SchemaProblem(Exception):
    """`where` is `value` (MISSING when absent), which is not `allowed`."""

    def __init__(self, where: str, value, allowed: str):
        super().__init__(f"{where}: {allowed}")
        self.where, self.value, self.allowed = where, value, allowed

    @property
    def missing(self) -> bool:
        return self.value is MISSING


class UnknownKeys(Exception):
    """Keys a table does not declare: `keys` (full field paths), `where` the table, `allowed` its keys."""

    def __init__(self, keys: list[str], where: str, allowed: list[str]):
        within = f" in {where}" if where else ""
        super().__init__(f"unknown key(s) {', '.join(keys)} (allowed{within}: {', '.join(allowed)})")
        self.keys, self.where, self.allowed = keys, where, allowed


MISSING = object()


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def describe(spec) -> str:
    if isinstance(spec, dict):
        return "an object with " + ", ".join(k for k in spec if not k.endswith("?"))
    if isinstance(spec, list):
        return "a non-empty list of " + describe(spec[0])
    if isinstance(spec, Keyed):
        return f"an object keyed by one or more of {', '.join(spec.names)}"
    return spec.allowed


def check_table(table: dict, fields: dict[str, object], *, where: str = "") -> dict:
    """One level: no unknown key, every required key present, every present key's value allowed (a nested table
    or list in `fields` is only checked to be one; `validate` goes down). Returns `table`."""
    names = [k.rstrip("?") for k in fields]
    extra = [_join(where, k) for k in table if k not in names]
    if extra:
        raise UnknownKeys(extra, where, names)
    for key, spec in fields.items():
        name = key.rstrip("?")
        if name not in table:
            if not key.endswith("?"):
                raise SchemaProblem(_join(where, name), MISSING, describe(spec))
        elif isinstance(spec, Field) and not spec.ok(table[name]):
            raise SchemaProblem(_join(where, name), table[name], spec.allowed)
    return table


def validate(value, spec, where: str = "") -> None:
    """`value` against `spec` all the way down (the first problem raises, in declaration order)."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise SchemaProblem(where, value, describe(spec))
        names = [k.rstrip("?") for k in spec]
        extra = [_join(where, k) for k in value if k not in names]
        for key, sub in spec.items():  # type and presence first: they say more than a stray key
            name = key.rstrip("?")
            if name in value:
                validate(value[name], sub, _join(where, name))
            elif not key.endswith("?"):
                raise SchemaProblem(_join(where, name), MISSING, describe(sub))
        if extra:
            raise UnknownKeys(extra, where, names)
    elif isinstance(spec, list):
        if not isinstance(value, list) or not value:
            raise SchemaProblem(where, value, describe(spec))
        for i, item in enumerate(value):
            validate(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, Keyed):
        if not isinstance(value, dict) or not value:
            raise SchemaProblem(where, value, describe(spec))
        extra = [k for k in value if k not in spec.names]
        if extra:
            raise UnknownKeys([_join(where, k) for k in extra], where, list(spec.names))
        for key, item in value.items():
            validate(item, spec.entry, _join(where, key))
    elif not spec.ok(value):
        raise SchemaProblem(where, value, spec.allowed)
