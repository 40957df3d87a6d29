"""Per-layer quantization sensitivity of one component, and the mixed recipe it implies.

    result = measure(pipe, "decoder", scheme="int8", progress=print)
    result.layers[0].name, result.layers[0].sqnr_db, result.layers[0].time_share
    chosen = choose_float_layers(result, pipe, floor_db=30.0)       # fewest float layers meeting the floor
    write_recipe(base_recipe, "decoder", chosen, Path("my.toml"), ...)

Each quantizable layer (Linear; for the VAE decoder also Conv1d and ConvTranspose1d) is quantized ALONE, the
component runs on representative inputs, and its output is compared with the float output (SQNR, dB). The
quantization is simulated in eager PyTorch exactly as the exported int8 schemes compute it, up to float summation
order:
  weights     symmetric int8 per output row of the layer's computed form: per output channel for Linear and
              Conv1d; for ConvTranspose1d per (output channel, tap) on LiteRT (its GEMM is [2s x O, I],
              oobleck._ConvTransposeCL) and per (output channel, phase) on ExecuTorch (its polyphase convolution,
              oobleck.ConvTransposePoly)
  activations dynamic asymmetric int8, as `backend`'s kernels choose the scales: a Linear's input per token
              (row); a decoder Conv1d's input with one scale for the whole tensor on both backends (LiteRT's
              dynamic-range CONV_2D; XNNPACK's dynamically quantized 2-D convolution on ExecuTorch); a
              ConvTranspose1d's input per time step on LiteRT (it runs as a GEMM there) and per tensor on
              ExecuTorch (a convolution there too). With the weight-only scheme int8w the activations
              stay float.
Representative inputs come from the reference itself on real prompts (`edgegen/assets/captions.txt`), never
from random tensors: the text encoder on the prompts; the DiT at points of the ping-pong trajectories those
prompts' conditioning drives; the decoder on the latents the trajectories end in (a window of `frames` frames
from the sounding part, so a full-size decoder is measured in minutes).

Time share: each layer's share of the component's eager fp32 time (measured in the reference pass, hooks around
each layer) and of its multiply-accumulates. A layer whose solo SQNR is low and time share small is the one to
keep in float. Measured on the user's checkpoint this is what `--sensitivity-floor` and `--write-recipe` use.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgegen.common import BACKENDS, default_seconds
from edgegen.errors import EdgegenError
from edgegen.metrics import sqnr_db

SCHEMA = "edgegen.sensitivity/1"
SENSITIVITY_SCHEMES = ("int8", "int8w")
COMPONENTS_MEASURED = ("text_encoder", "dit", "decoder")
CAPTIONS = Path(__file__).resolve().parent / "assets" / "captions.txt"


@dataclass
class Layer:
    name: str                 # module path inside the component (what recipe rules match)
    kind: str                 # Linear, Conv1d, ConvTranspose1d
    params: int
    macs_share: float         # of the component's quantizable multiply-accumulates on these inputs
    time_share: float         # of the component's eager fp32 time on these inputs
    sqnr_db: float = math.nan  # the component's output with only this layer quantized


@dataclass
class Result:
    model: str
    component: str
    scheme: str
    description: str          # what the representative inputs were
    layers: list[Layer]       # sorted: most damaging first
    all_sqnr_db: float        # every layer quantized at once
    seconds: float
    chosen: dict = field(default_factory=dict)
    backend: str = "executorch"  # whose activation quantization was simulated
    # what was measured on, kept for choose_float_layers (not reported): the inputs and the float outputs
    inputs: list = field(default_factory=list, repr=False)
    reference: torch.Tensor | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "model": self.model, "component": self.component, "scheme": self.scheme,
                "backend": self.backend, "inputs": self.description,
                "layers": [asdict(layer) for layer in self.layers],
                "all_sqnr_db": self.all_sqnr_db, "seconds": self.seconds, "chosen": self.chosen}


# --- simulated int8 ---------------------------------------------------------------------------------------------

def _int8_rows(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Dynamic asymmetric int8 along `dim` (one scale / zero point per row; dim None: one for the tensor),
    dequantized."""
    lo = (x.amin(dim, keepdim=True) if dim is not None else x.amin()).clamp(max=0.0)
    hi = (x.amax(dim, keepdim=True) if dim is not None else x.amax()).clamp(min=0.0)
    scale = (hi - lo).clamp_min(1e-12) / 255.0
    zero = torch.round(-lo / scale) - 128.0
    q = torch.clamp(torch.round(x / scale) + zero, -128.0, 127.0)
    return (q - zero) * scale


def _int8_weight(m: nn.Module, backend: str) -> torch.Tensor:
    """Symmetric int8 per output row of the layer as `backend` computes it, dequantized (same shape as m.weight)."""
    w = m.weight.detach()
    if isinstance(m, nn.ConvTranspose1d) and backend == "executorch":
        # polyphase form (oobleck.ConvTransposePoly): one row per (output channel, phase j) holds taps j and s + j
        i, o, k = w.shape
        phases = w.reshape(i, o, 2, k // 2)
        scale = phases.abs().amax((0, 2), keepdim=True).clamp_min(1e-12) / 127.0
        return (torch.clamp(torch.round(phases / scale), -127.0, 127.0) * scale).reshape(i, o, k)
    dims = (0,) if isinstance(m, nn.ConvTranspose1d) else tuple(range(1, w.dim()))
    scale = w.abs().amax(dims, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.clamp(torch.round(w / scale), -127.0, 127.0) * scale


def quantizable(component: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    kinds = (nn.Linear, nn.Conv1d, nn.ConvTranspose1d) if component in ("decoder", "encoder") else (nn.Linear,)
    return [(name, m) for name, m in module.named_modules() if isinstance(m, kinds)]


class simulated_int8:
    """Context: the named layers of `module` compute in simulated `scheme` (one of SENSITIVITY_SCHEMES): weights
    swapped for their int8 rounding, inputs quantized too for "int8" (as `backend`'s kernels do), left float for
    the weight-only "int8w"."""

    def __init__(self, layers: list[tuple[str, nn.Module]], scheme: str = "int8", backend: str = "executorch"):
        self.layers, self.activations, self.backend = layers, scheme == "int8", backend
        self.saved: list[tuple[nn.Module, torch.Tensor]] = []
        self.handles = []

    def __enter__(self):
        for _, m in self.layers:
            self.saved.append((m, m.weight.data))
            m.weight.data = _int8_weight(m, self.backend)
            if not self.activations:
                continue
            dim = -1 if isinstance(m, nn.Linear) else 1
            if type(m) is nn.Conv1d or (type(m) is nn.ConvTranspose1d and self.backend == "executorch"):
                # one scale for the whole input: LiteRT's dynamic-range CONV_2D and XNNPACK's dynamically quantized
                # 2-D convolution on ExecuTorch (ConvTransposes too); LiteRT runs a ConvTranspose as a GEMM: per row
                dim = None
            self.handles.append(m.register_forward_pre_hook(
                lambda _m, args, dim=dim: (_int8_rows(args[0], dim), *args[1:])))
        return self

    def __exit__(self, *exc):
        for m, w in self.saved:
            m.weight.data = w
        for h in self.handles:
            h.remove()
        return False


# --- representative inputs --------------------------------------------------------------------------------------

def representative_prompts(n: int) -> list[str]:
    lines = [line.strip() for line in CAPTIONS.read_text().splitlines() if line.strip()]
    return [lines[(i * len(lines)) // n] for i in range(n)]


@torch.no_grad()
def representative_inputs(pipe, component: str, *, prompts: int = 2, seconds: float | None = None,
                          frames: int = 32, dit_calls: int = 4, seed: int = 0) -> tuple[list[tuple], str]:
    """[(args of one component call), ...] and a line saying what they are."""
    from edgegen.sampler import make_noise, pingpong, schedule

    texts = representative_prompts(prompts)
    seconds = default_seconds(pipe.max_seconds) if seconds is None else seconds
    pipe.check_seconds(seconds)
    ids, mask = pipe.tokenize(texts)
    secs = torch.full((len(texts),), float(seconds))
    if component == "text_encoder":
        return [(ids[i:i + 1], mask[i:i + 1], secs[i:i + 1]) for i in range(len(texts))], \
            f"{len(texts)} captions, {seconds:g} s"
    ts = schedule(8)
    calls, finals = [], []
    for i in range(len(texts)):
        cross, glob = pipe.text_encoder(ids[i:i + 1], mask[i:i + 1], secs[i:i + 1])
        noise = make_noise(seed=seed + i, steps=8, channels=pipe.config.dit.io_channels, length=pipe.latent_length)

        def velocity(x, t, cross=cross, glob=glob):
            calls.append((x.clone(), t.clone(), cross, glob))
            return pipe.dit(x, t, cross, glob)

        finals.append(pingpong(velocity, noise, ts))
    if component == "dit":
        pick = sorted({round(k * (len(calls) - 1) / max(dit_calls - 1, 1)) for k in range(dit_calls)})
        return [calls[k] for k in pick], (f"{len(pick)} DiT calls along the 8-step trajectories of {len(texts)} "
                                          f"captions ({seconds:g} s)")
    sounding = max(1, min(pipe.latent_length, math.ceil(seconds * pipe.sample_rate / pipe.config.vae.hop)))
    w = min(frames, pipe.latent_length)
    start = max(0, min(sounding // 2 - w // 2, pipe.latent_length - w))
    return [(x[:, :, start:start + w].contiguous(),) for x in finals], \
        (f"{len(finals)} latent windows of {w} frames (from {start}) sampled by the reference from captions "
         f"({seconds:g} s)")


# --- measuring --------------------------------------------------------------------------------------------------

def _outputs(module: nn.Module, inputs: list[tuple]) -> torch.Tensor:
    outs = []
    for args in inputs:
        y = module(*args)
        outs.extend(t.reshape(-1) for t in (y if isinstance(y, tuple) else (y,)))
    return torch.cat(outs).double()


class _Runs:
    """The component's outputs on the inputs, concatenated. A decoder (one Sequential of blocks) runs only the blocks
    from the one holding a changed layer onward, on cached inputs of that block: the blocks before it compute
    exactly what they computed in float (same ops, same order), so the output is the same as a whole run."""

    def __init__(self, component: str, module: nn.Module, inputs: list[tuple]):
        self.module, self.inputs = module, inputs
        top = getattr(module, "layers", None)
        self.top = top if component == "decoder" and isinstance(top, nn.Sequential) else None
        self.cache: list[list[torch.Tensor]] = []
        if self.top is not None:
            for (x,) in inputs:
                x = x * module.scale if module.scale != 1.0 else x
                held = []
                for layer in self.top:
                    held.append(x)
                    x = layer(x)
                self.cache.append(held)

    def __call__(self, changed: list[str] | None = None) -> torch.Tensor:
        if self.top is None or not changed:
            return _outputs(self.module, self.inputs)
        first = min(int(name.split(".")[1]) for name in changed)
        outs = []
        for held in self.cache:
            x = held[first]
            for layer in self.top[first:]:
                x = layer(x)
            outs.append(x.reshape(-1))
        return torch.cat(outs).double()


def _profile(module: nn.Module, layers: list[tuple[str, nn.Module]], inputs: list[tuple]):
    """The float outputs, and each layer's (MACs, eager seconds) over all inputs."""
    macs = {name: 0 for name, _ in layers}
    secs = {name: 0.0 for name, _ in layers}
    start: dict[str, float] = {}
    handles = []
    for name, m in layers:
        def pre(_m, _args, name=name):
            start[name] = time.perf_counter()

        def post(m, args, out, name=name):
            secs[name] += time.perf_counter() - start[name]
            x = args[0]
            if isinstance(m, nn.Linear):
                macs[name] += x.numel() // m.in_features * m.in_features * m.out_features
            elif isinstance(m, nn.Conv1d):
                macs[name] += out.shape[0] * out.shape[-1] * m.weight.numel()
            else:
                macs[name] += x.shape[0] * x.shape[-1] * m.weight.numel()

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        t0 = time.perf_counter()
        ref = _outputs(module, inputs)
        total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    return ref, macs, secs, total


@torch.no_grad()
def measure(pipe, component: str, *, scheme: str = "int8", prompts: int = 2, seconds: float | None = None,
            frames: int = 32, dit_calls: int = 4, seed: int = 0, backend: str = "executorch",
            progress: Callable[[str], None] = lambda line: None) -> Result:
    if component not in COMPONENTS_MEASURED:
        raise EdgegenError(f"unknown component {component!r}: choose one of {', '.join(COMPONENTS_MEASURED)}")
    if scheme not in SENSITIVITY_SCHEMES:
        raise EdgegenError(f"scheme {scheme!r} is not measured: choose one of {', '.join(SENSITIVITY_SCHEMES)}")
    if backend not in BACKENDS:  # each runtime quantizes activations its own way (module docstring)
        raise EdgegenError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    clock = time.perf_counter()
    progress(f"{component}: sampling representative inputs from the reference")
    inputs, what = representative_inputs(pipe, component, prompts=prompts, seconds=seconds, frames=frames,
                                         dit_calls=dit_calls, seed=seed)
    module = getattr(pipe, component)
    layers = quantizable(component, module)
    if not layers:
        raise EdgegenError(f"{component} has no quantizable layers")
    ref, macs, secs, total = _profile(module, layers, inputs)
    run = _Runs(component, module, inputs)
    all_macs = sum(macs.values()) or 1
    out = []
    for i, (name, m) in enumerate(layers):
        with simulated_int8([(name, m)], scheme, backend):
            sqnr = sqnr_db(ref, run([name]))
        out.append(Layer(name=name, kind=type(m).__name__, params=m.weight.numel(),
                         macs_share=macs[name] / all_macs, time_share=secs[name] / total if total else 0.0,
                         sqnr_db=sqnr))
        progress(f"{component}: layer {i + 1}/{len(layers)} {name}: {sqnr:.1f} dB "
                 f"({time.perf_counter() - clock:.0f} s)")
    with simulated_int8(layers, scheme, backend):
        all_sqnr = sqnr_db(ref, run([name for name, _ in layers]))
    progress(f"{component}: all {len(layers)} layers quantized: {all_sqnr:.1f} dB")
    out.sort(key=lambda layer: (layer.sqnr_db, layer.name))
    return Result(model=pipe.source.model, component=component, scheme=scheme, description=what, layers=out,
                  all_sqnr_db=all_sqnr, seconds=time.perf_counter() - clock, backend=backend, inputs=inputs,
                  reference=ref)


MARGIN_DB = 1.0  # simulated vs runtime kernels, and these inputs vs the export check's (measured 0.1-1.1 dB apart)


@torch.no_grad()
def choose_float_layers(result: Result, pipe, *, floor_db: float, margin_db: float = MARGIN_DB,
                        progress: Callable[[str], None] = lambda line: None) -> dict:
    """The fewest layers to keep in float (most damaging first) so the component, with every other layer
    quantized, meets `floor_db` + `margin_db` in simulation: a binary search over how many of the sorted layers
    stay float, each candidate measured on the inputs `measure` used (it assumes more float layers never lower the SQNR;
    the chosen set is measured). The margin covers the runtime's kernels computing a little differently and the
    export check running other inputs. Returns {"floor_db", "margin_db", "float_layers", "sqnr_db",
    "time_share_float"}."""
    module = getattr(pipe, result.component)
    by_name = dict(quantizable(result.component, module))
    ref = result.reference
    run = _Runs(result.component, module, result.inputs)
    order = [layer.name for layer in result.layers]

    def sqnr_keeping(k: int) -> float:
        with simulated_int8([(n, by_name[n]) for n in order[k:]], result.scheme, result.backend):
            return sqnr_db(ref, run(order[k:]))

    lo, hi = 0, len(order)  # invariant: keeping `hi` float meets the floor (all float: inf)
    measured = {len(order): math.inf}
    while lo < hi:
        mid = (lo + hi) // 2
        measured[mid] = sqnr_keeping(mid)
        progress(f"{result.component}: {mid} layer(s) float -> {measured[mid]:.1f} dB (floor {floor_db:g} + "
                 f"margin {margin_db:g})")
        if measured[mid] >= floor_db + margin_db:
            hi = mid
        else:
            lo = mid + 1
    floats = order[:hi]
    share = sum(layer.time_share for layer in result.layers if layer.name in floats)
    chosen = {"floor_db": floor_db, "margin_db": margin_db, "float_layers": floats, "sqnr_db": measured.get(hi, sqnr_keeping(hi)),
              "time_share_float": share}
    result.chosen = chosen
    return chosen


# --- reports and recipes ----------------------------------------------------------------------------------------

def format_table(result: Result, limit: int | None = None) -> str:
    rows = result.layers if limit is None else result.layers[:limit]
    width = max(len(layer.name) for layer in rows)
    lines = [f"{result.model} {result.component}, {result.scheme} one layer at a time on {result.description}",
             f"{'layer':<{width}}  {'kind':<15} {'params':>10} {'time %':>7} {'MACs %':>7} {'SQNR dB':>8}"]
    for layer in rows:
        lines.append(f"{layer.name:<{width}}  {layer.kind:<15} {layer.params:>10} {100 * layer.time_share:>7.2f} "
                     f"{100 * layer.macs_share:>7.2f} {layer.sqnr_db:>8.1f}")
    if limit is not None and len(result.layers) > limit:
        lines.append(f"... {len(result.layers) - limit} more (all in the JSON)")
    lines.append(f"all {len(result.layers)} layers {result.scheme}: {result.all_sqnr_db:.1f} dB "
                 f"({result.seconds:.0f} s)")
    if result.chosen:
        c = result.chosen
        lines.append(f"floor {c['floor_db']:g} dB (+{c['margin_db']:g} dB margin): {len(c['float_layers'])} layer(s) "
                     f"kept float ({100 * c['time_share_float']:.1f}% of the eager time), the rest {result.scheme}: "
                     f"{c['sqnr_db']:.1f} dB")
    return "\n".join(lines)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def recipe_toml(base, component: str, result: Result, *, name: str) -> str:
    """The text of a recipe: `base` (a Recipe) with `component`'s rules replaced by the chosen float layers then
    `*` in the measured scheme, its floor the chosen floor. Written as data: other components as in `base`."""
    c = result.chosen
    solo = {layer.name: layer.sqnr_db for layer in result.layers}
    description = (f"{base.name} with {component} {result.scheme} except the layers sensitivity keeps float "
                   f"(floor {c['floor_db']:g} dB)")
    lines = [f"# Written by `edgegen sensitivity --model {result.model} --component {component} --scheme "
             f"{result.scheme} --backend {result.backend} --floor {c['floor_db']:g}` from recipe {base.name!r}.",
             f"# Measured on {result.description}: every layer {result.scheme} {result.all_sqnr_db:.1f} dB; with the "
             f"layers below float {c['sqnr_db']:.1f} dB.",
             f"name = {_toml_str(name)}",
             f"description = {_toml_str(description)}",
             ""]
    for comp, rec in base.components.items():
        lines.append(f"[components.{comp}]")
        if comp == component:
            lines.append(f"sqnr_floor_db = {float(c['floor_db'])!r}")
            lines.append("rules = [")
            for layer in c["float_layers"]:
                lines.append(f"  # alone in {result.scheme}: {solo[layer]:.1f} dB")
                lines.append(f"  {{ pattern = {_toml_str(layer)}, scheme = \"fp32\" }},")
            lines.append(f"  {{ pattern = \"*\", scheme = {_toml_str(result.scheme)} }},")
            lines.append("]")
        else:
            if rec.sqnr_floor_db is not None:
                lines.append(f"sqnr_floor_db = {rec.sqnr_floor_db!r}")
            lines.append("rules = [")
            for r in rec.rules:
                extra = (f", group_size = {r.group_size}" if "int4" in (r.scheme, r.fallback) else "") + \
                        (f", fallback = {_toml_str(r.fallback)}" if r.fallback else "") + \
                        (f", backend = {_toml_str(r.backend)}" if r.backend else "")
                lines.append(f"  {{ pattern = {_toml_str(r.pattern)}, scheme = {_toml_str(r.scheme)}{extra} }},")
            lines.append("]")
        lines.append("")
    return "\n".join(lines)


def float_rules(float_layers: list[str], scheme: str):
    """Recipe rules keeping `float_layers` fp32 and every other layer in `scheme` (first match wins)."""
    from edgegen.recipes import Rule

    return tuple(Rule(n, "fp32") for n in float_layers) + (Rule("*", scheme),)


def tuned_recipe(base, pipe, *, floor_db: float, backend: str, components: tuple[str, ...] = ("decoder",),
                 progress: Callable[[str], None] = lambda line: None, **kw):
    """`base` with each listed component's quantized rules replaced by the fewest float layers meeting
    `floor_db` on this pipeline's weights, simulating `backend`'s kernels (what `edgegen export
    --sensitivity-floor` does for its target). Components that the base keeps float are left alone. Returns
    (Recipe, {component: Result})."""
    from dataclasses import replace

    from edgegen.recipes import ComponentRecipe

    comps, results = dict(base.components), {}
    for comp in components:
        rec = comps.get(comp)
        schemes = {r.scheme for r in rec.rules} if rec else set()
        if not schemes & set(SENSITIVITY_SCHEMES):
            continue
        scheme = "int8" if "int8" in schemes or "int8w" not in schemes else "int8w"  # the recipe's own int8 kind
        result = measure(pipe, comp, scheme=scheme, backend=backend, progress=progress, **kw)
        chosen = choose_float_layers(result, pipe, floor_db=floor_db, progress=progress)
        comps[comp] = ComponentRecipe(rules=float_rules(chosen["float_layers"], scheme), sqnr_floor_db=float(floor_db))
        results[comp] = result
    return replace(base, components=comps, name=f"{base.name}+sensitivity{floor_db:g}"), results


def sensitivity_report(*, model: str, t5: Path | None = None, t5_precision: str = "fp16", component: str,
                       scheme: str = "int8", prompts: int = 2, seconds: float | None = None, frames: int = 32,
                       backend: str = "litert", floor_db: float | None = None, write_recipe: Path | None = None,
                       recipe: str = "fast", json_path: Path | None = None,
                       log: Callable[[str], None] = lambda line: None,
                       show: Callable[[str], None] = lambda text: None) -> Result:
    """`edgegen sensitivity`: `measure` `component` of `model` (and `choose_float_layers` for `floor_db`), `show`
    the table, and write the figures as JSON (`json_path`) and the mixed recipe built on `recipe` (`write_recipe`,
    read back under the recipe schema), each write `show`n. `log` gets the progress lines."""
    import json

    from edgegen.common import write_text_atomic
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import load_recipe

    if write_recipe is not None and floor_db is None:
        raise EdgegenError("--write-recipe needs --floor DB (the SQNR the written recipe must keep)")
    base = load_recipe(recipe) if write_recipe is not None else None  # a bad name fails before minutes of work
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    result = measure(pipe, component, scheme=scheme, backend=backend, progress=log, prompts=prompts, seconds=seconds,
                     frames=frames)
    if floor_db is not None:
        choose_float_layers(result, pipe, floor_db=floor_db, progress=log)
    show(format_table(result))
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(result.to_json(), indent=2) + "\n")
        show(f"wrote {json_path}")
    if write_recipe is not None:
        write_text_atomic(write_recipe, recipe_toml(base, component, result, name=write_recipe.stem))
        load_recipe(write_recipe)  # what was written reads back under the recipe schema
        show(f"wrote {write_recipe}")
    return result
