"""Setting checks shared by the training library and the `edgegen train` options; imports nothing heavy.

    check_number("lr", 1e-3, lo=0, lo_open=True)          # finite, in range, else one EdgegenError line
    check_dit({"embed_dim": 128, "depth": 4, "num_heads": 2}, names=DIT_CLI_NAMES, shown="--dit 128,4,2")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgegen.errors import EdgegenError

DIT_FIELDS = ("embed_dim", "depth", "num_heads")
DIT_CLI_NAMES = {"embed_dim": "WIDTH", "depth": "DEPTH", "num_heads": "HEADS"}  # `--dit WIDTH,DEPTH,HEADS`
SEED_MAX = 2**63 - 1  # torch.manual_seed's range


def describe_range(lo=None, hi=None, lo_open=False, hi_open=False, integer=False) -> str:
    """"a finite number > 0", "an integer >= 1", "a finite number in [0, 1)" ..."""
    what = "an integer" if integer else "a finite number"
    lo, hi = (v if v is None or isinstance(v, int) else f"{v:g}" for v in (lo, hi))
    if lo is not None and hi is not None:
        return f"{what} in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{what} {'<' if hi_open else '<='} {hi}"
    return what


def check_number(name: str, value, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False, integer: bool = False, shown: str | None = None) -> None:
    """`value` must be a finite number (an int when `integer`) within the bounds; otherwise one line naming
    `name`, the value (`shown`: as the user typed it) and what is allowed."""
    kind_ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = kind_ok and not isinstance(value, bool) and math.isfinite(value) \
        and (lo is None or (value > lo if lo_open else value >= lo)) \
        and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        raise EdgegenError(f"{name} {shown if shown is not None else repr(value)} is not allowed: expected "
                           f"{describe_range(lo, hi, lo_open, hi_open, integer)}")


@dataclass(frozen=True)
class SharedSettings:
    """The settings RF and ARC training share: AdamW, clipping, EMA of the trained network, CFG dropout, batch, seed."""
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01
    clip_grad_norm: float = 1.0
    ema_beta: float = 0.9999                # EMA warmup power 3/4
    ema_power: float = 0.75
    cfg_dropout: float = 0.1
    batch_size: int = 32                    # per process
    seed: int = 0

    def check_shared(self) -> None:
        for i, beta in enumerate(self.betas):
            check_number(f"betas[{i}]", beta, lo=0, hi=1, hi_open=True)
        check_number("eps", self.eps, lo=0, lo_open=True)
        check_number("weight_decay", self.weight_decay, lo=0)
        check_number("clip_grad_norm", self.clip_grad_norm, lo=0)
        check_number("ema_beta", self.ema_beta, lo=0, hi=1, hi_open=True)
        check_number("ema_power", self.ema_power, lo=0, lo_open=True)
        check_number("cfg_dropout", self.cfg_dropout, lo=0, hi=1)
        check_number("batch_size", self.batch_size, lo=1, integer=True)
        check_number("seed", self.seed, lo=0, hi=SEED_MAX, integer=True)


def check_dit(dit: dict, *, names: dict[str, str] | None = None, shown: str = "") -> None:
    """A DiT shape the model code builds: positive integers, embed_dim a multiple of num_heads, heads of at least
    32 channels (the rotary embedding spans max(head_dim / 2, 32) of them). `names` maps the fields to what the
    user typed (DIT_CLI_NAMES) and `shown` (the option as typed) starts the message."""
    names = names or {k: k for k in DIT_FIELDS}
    prefix = f"{shown}: " if shown else ""
    if unknown := set(dit) - set(DIT_FIELDS):
        raise EdgegenError(f"{prefix}unknown DiT fields {sorted(unknown)}; allowed: {', '.join(DIT_FIELDS)}")
    for key in DIT_FIELDS:
        v = dit.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise EdgegenError(f"{prefix}{names[key]} {v!r} is not allowed: expected an integer >= 1")
    width, heads = dit["embed_dim"], dit["num_heads"]
    w, h = names["embed_dim"], names["num_heads"]
    if width % heads:
        raise EdgegenError(f"{prefix}{w} {width} is not a multiple of {h} {heads} (each head gets {w} / {h} "
                           f"channels); e.g. {w} {max(width + heads - width % heads, heads * 32)}")
    if width // heads < 32:
        raise EdgegenError(f"{prefix}{w} {width} / {h} {heads} gives heads of {width // heads} channels; the rotary "
                           f"embedding needs at least 32: raise {w} to {heads * 32} or lower {h}")
