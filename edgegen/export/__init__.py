"""`export_bundle`: pipeline + target + recipe -> a verified bundle folder, written atomically.

    report = export_bundle(pipe, target=load_target("host-executorch"), recipe=load_recipe("int8"),
                           out=Path("bundles/tiny-int8"), progress=print)

Per component: wrap (fixed-shape tensors in/out) -> quantize by the recipe's rules -> trace -> lower ->
serialize; then the tokenizer is copied and `manifest.json` written. Work happens in a temporary folder
beside `out` and is renamed only when everything succeeded.
"""

from __future__ import annotations

import copy
import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import edgegen
from edgegen.bundle import COMPONENTS, MANIFEST, file_entry, staging, zip_bundle
from edgegen.errors import EdgegenError
from edgegen.export.support import check_supported
from edgegen.export.wrappers import example_inputs, io_spec, wrap
from edgegen.recipes import Recipe, Target

EXTENSIONS = {"executorch": ".pte", "litert": ".tflite"}


@dataclass
class ComponentReport:
    component: str
    file: str
    size: int
    seconds: float
    delegated_fraction: float | None
    schemes: dict[str, int] = field(default_factory=dict)


@dataclass
class ExportReport:
    out: Path
    components: list[ComponentReport]
    peak_rss_mb: float
    seconds: float


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count(applied: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for scheme in applied.values():
        out[scheme] = out.get(scheme, 0) + 1
    return out


def parse_decoder_window(window: str | int | None) -> str | int | None:
    """The spelling of --decoder-window, checked without the model: "auto", None (whole sequence) or an int."""
    if window in (None, 0, "0", "whole"):
        return None
    if window == "auto":
        return "auto"
    try:
        return int(window)
    except (TypeError, ValueError):
        raise EdgegenError(f"decoder window must be auto, whole or a number of latent frames, got {window!r}") from None


def resolve_decoder_window(pipe, window: str | int | None) -> tuple[int, int] | None:
    """(window, overlap) for a streamed decoder, or None for a whole-sequence one.

    "auto" streams when the sequence is longer than `streaming.default_window` (SAO-small: 60 of 256 frames);
    "whole" (or 0 / None) never streams; an integer asks for that window. The overlap is always the decoder's
    receptive field, derived from its layers, so stitched audio equals the whole decode.
    """
    from edgegen.streaming import default_window, receptive_field

    w = parse_decoder_window(window)
    if w is None:
        return None
    rf, T = receptive_field(pipe.decoder), pipe.latent_length
    if w == "auto":
        w, o = default_window(rf, length=T)
        return (w, o) if T > w else None
    if w <= 2 * rf:
        raise EdgegenError(f"decoder window {w} is too small: it must exceed 2 x the decoder's receptive field "
                           f"({rf} latent frames), i.e. be >= {2 * rf + 1}")
    if w >= T:
        raise EdgegenError(f"decoder window {w} is not shorter than the {T}-frame latent sequence; nothing to "
                           "stream, use --decoder-window whole")
    return w, rf


def _export_component(pipe, comp: str, *, target: Target, recipe: Recipe, path: Path, stage,
                      decoder_window: int | None = None) -> ComponentReport:
    start = time.perf_counter()
    rules = recipe.resolved_rules(comp, target)
    half = any(r.scheme == "fp16" for r in rules)
    stage(comp, "quantize")
    module = copy.deepcopy(getattr(pipe, comp))  # never quantize the caller's pipeline
    rule_for = lambda fqn: recipe.rule_for(comp, fqn, target)  # noqa: E731
    example = example_inputs(pipe, comp, decoder_window=decoder_window)
    if target.backend == "executorch":
        from edgegen.export import executorch as backend

        from edgegen.components.export_form import set_export_form

        applied = {} if half else backend.quantize_executorch(module, rule_for)
        set_export_form(module)  # XNNPACK-delegable formulations of LayerNorm, attention, Snake
        if comp == "decoder":  # convs as GEMMs on [B, L, C]: ExecuTorch's XNNPACK conv path is ~2.3x slower
            from edgegen.components.oobleck import ChannelsLastDecoder

            module = ChannelsLastDecoder(module).eval()
        if half:
            module = module.half()
        wrapper = wrap(comp, module, half=half)
        stats = backend.export_pte(wrapper, example, path, on_stage=lambda s: stage(comp, s))
        if stats.delegated_ops == 0:
            raise EdgegenError(f"{comp}: nothing was delegated to XNNPACK ({stats.non_delegated}); the artifact "
                               "would run on slow portable kernels")
        fraction = stats.fraction
    else:
        from edgegen.export import litert as backend

        wrapper = wrap(comp, module)
        applied = backend.export_tflite(wrapper, example, path, component=comp, rules=rules, rule_for=rule_for,
                                        on_stage=lambda s: stage(comp, s))
        fraction = None
    if half:
        applied = {"*": "fp16"}
    size = path.stat().st_size
    return ComponentReport(component=comp, file=path.name, size=size, seconds=time.perf_counter() - start,
                           delegated_fraction=fraction, schemes=_count(applied))


def export_bundle(pipe, *, target: Target, recipe: Recipe, out: Path, components: tuple[str, ...] = COMPONENTS,
                  force: bool = False, make_zip: bool = False, decoder_window: str | int | None = "auto",
                  progress: Callable[[str, str], None] = lambda comp, stage: None) -> ExportReport:
    check_supported(recipe, target)
    stream = resolve_decoder_window(pipe, decoder_window) if "decoder" in components else None
    window = stream[0] if stream else None
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise EdgegenError(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}")
    start = time.perf_counter()
    reports = []
    with staging(Path(out), force=force) as tmp:
        artifacts = {}
        for comp in components:
            path = tmp / f"{comp}{EXTENSIONS[target.backend]}"
            rep = _export_component(pipe, comp, target=target, recipe=recipe, path=path, stage=progress,
                                    decoder_window=window)
            reports.append(rep)
            entry = {**file_entry(path), **io_spec(pipe, comp, decoder_window=window), "schemes": rep.schemes}
            if rep.delegated_fraction is not None:
                entry["delegated_fraction"] = round(rep.delegated_fraction, 4)
            artifacts[comp] = entry
        shutil.copy(pipe.tokenizer.path, tmp / "spiece.model")
        manifest = build_manifest(pipe, target=target, recipe=recipe, artifacts=artifacts,
                                  tokenizer=file_entry(tmp / "spiece.model"), stream=stream)
        import json

        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if make_zip:
        zip_bundle(Path(out), Path(out).with_suffix(".zip"))
    return ExportReport(out=Path(out), components=reports, peak_rss_mb=_peak_rss_mb(),
                        seconds=time.perf_counter() - start)


def build_manifest(pipe, *, target: Target, recipe: Recipe, artifacts: dict, tokenizer: dict,
                   stream: tuple[int, int] | None = None) -> dict:
    from edgegen.sampler import LOGSNR_MAX, LOGSNR_MIN

    if target.backend == "executorch":
        from edgegen.export.executorch import runtime_version
    else:
        from edgegen.export.litert import runtime_version
    src = pipe.source
    manifest = {
        "schema_version": 2 if stream else 1,  # the lowest version that describes this bundle (see bundle.py)
        "edgegen_version": edgegen.__version__,
        "backend": target.backend,
        "runtime_version": runtime_version(),
        "target": target.to_json(),
        "recipe": recipe.to_json(),
        "source": {"model": src.model, "config_sha256": src.config_sha256, "checkpoint_sha256": src.checkpoint_sha256,
                   "t5": src.t5},
        "sample_rate": pipe.sample_rate,
        "channels": 2,
        "latent_length": pipe.latent_length,
        "max_seconds": math.floor(pipe.max_seconds * 1e4) / 1e4,  # rounded down: never past the decoder's output
        "sampler": {"type": "pingpong", "steps": 8, "logsnr_max": LOGSNR_MAX, "logsnr_min": LOGSNR_MIN},
        "tokenizer": {**tokenizer, "max_length": pipe.config.max_length, "eos_id": pipe.tokenizer.eos_id,
                      "pad_id": pipe.tokenizer.pad_id},
        "artifacts": artifacts,
    }
    if stream:
        from edgegen.streaming import receptive_field

        manifest["decoder_stream"] = {"window": stream[0], "overlap": stream[1], "hop": pipe.config.vae.hop,
                                      "receptive_field": receptive_field(pipe.decoder)}
    return manifest
