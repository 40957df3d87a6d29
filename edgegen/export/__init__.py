"""`export_bundle`: pipeline + target + recipe -> a verified bundle folder, written atomically.

    report = export_bundle(pipe, target=load_target("host-executorch"), recipe=load_recipe("int8"),
                           out=Path("bundles/tiny-int8"), progress=lambda comp, stage: print(comp, stage))

This module orchestrates; each backend module (`executorch`, `litert`) has one entry point,
`export_component(component, module, example_inputs, path, rules=..., on_stage=...)`, that does everything
backend-specific (quantize, export forms, casts, trace, lower, serialize). Everything that can be checked
without export work is checked first (support matrix, output path, decoder window, finite weights); then per
component the backend writes its artifact, the tokenizer is copied and `manifest.json` written. Work happens
in a staging folder beside `out` that is renamed only when everything succeeded (see `staging.py`). The
converters' console output goes to a log file there (`verbose` leaves it on the console); it is not part of
the bundle, and when a conversion fails its tail travels with the error and the log is kept.

Then the staged bundle verifies itself (`verify.py`, on by default): each artifact runs in its runtime against
the reference component on parity's representative inputs, and a component below its recipe's floor raises
VerificationError before the rename, so nothing is published. The manifest records the outcome either way in
`verification` (the figures, or `{"verified": false, "reason": "--no-verify"}`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

import edgegen
from edgegen.bundle import MANIFEST, file_entry
from edgegen.common import ARTIFACTS, COMPONENTS, check_finite, peak_rss_mb
from edgegen.errors import EdgegenError
# (`staging` is also this package's submodule: keep that name for the module, the function is `_staging` here)
from edgegen.export.staging import LOG_NAME, ConverterLog, check_bundle_output, zip_bundle
from edgegen.export.staging import staging as _staging
from edgegen.export.reuse import ArtifactCache
from edgegen.export.support import check_supported
from edgegen.export.wrappers import example_inputs, io_spec
from edgegen.manifest import ArtifactEntry, DecoderStream, Manifest, SamplerSpec, Source, TokenizerEntry
from edgegen.recipes import QUANTIZED_SCHEMES, Recipe, Target
from edgegen.runtime import release_memory
from edgegen.xnnpack import profile_precision

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
    verification: dict = field(default_factory=dict)  # what manifest.json records under `verification`


class ConversionError(EdgegenError):
    """A backend converter failed; `log_tail` holds the last lines of its output, `log_path` the kept log."""

    def __init__(self, message: str, *, log_tail: list[str], log_path: Path):
        super().__init__(message)
        self.log_tail, self.log_path = log_tail, log_path


def _count(applied: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for scheme in applied.values():
        out[scheme] = out.get(scheme, 0) + 1
    return out


def parse_decoder_window(window: str | int | None) -> str | int | None:
    """The spelling of --decoder-window, checked without the model: "auto", None (whole sequence) or an int
    >= 1 (whether it is large enough needs the model: `resolve_decoder_window`)."""
    if window in (None, "whole"):
        return None
    if window == "auto":
        return "auto"
    try:
        w = int(window)
    except (TypeError, ValueError):
        raise EdgegenError(f"decoder window must be auto, whole or a number of latent frames, got {window!r}") from None
    if w < 1:
        raise EdgegenError(f"decoder window {w} is too small: give a number of latent frames above 2 x the "
                           "decoder's receptive field, or whole for the whole sequence")
    return w


STREAM_MODES = ("stateful", "overlap")


def resolve_decoder_window(pipe, window: str | int | None, mode: str = "stateful") -> dict | None:
    """The manifest's `decoder_stream` for a streamed decoder, or None for a whole-sequence one.

    mode "stateful" (schema 3, the default): back-to-back windows of a StatefulDecoder, every latent frame decoded
    once; "auto" picks `streaming.default_stateful_window` and streams any sequence longer than it; an integer asks
    for that window (1 <= window < latent length). mode "overlap" (schema 2, what edgegen wrote before): overlapping
    windows of a plain decoder, overlap = the receptive field derived from its layers; "auto" streams when the
    sequence is longer than `streaming.default_window` (SAO-small: 60 of 256 frames). "whole" (or None) never streams.
    Either way the stitched audio equals the whole decode up to float rounding.
    """
    from edgegen.streaming import default_stateful_window, default_window, receptive_field, stateful_layout

    if mode not in STREAM_MODES:
        raise EdgegenError(f"decoder stream mode must be one of {', '.join(STREAM_MODES)}, got {mode!r}")
    w = parse_decoder_window(window)
    if w is None:
        return None
    rf, T, hop = receptive_field(pipe.decoder), pipe.latent_length, pipe.config.vae.hop
    if mode == "stateful":
        if w == "auto":
            w = default_stateful_window(pipe.decoder.config, length=T)
            if T <= w:
                return None
        elif w >= T:
            raise EdgegenError(f"decoder window {w} is not shorter than the {T}-frame latent sequence; nothing to "
                               "stream, use --decoder-window whole")
        delay, state_size = stateful_layout(pipe.decoder.config, window=w)
        return {"mode": "stateful", "window": w, "hop": hop, "delay": delay, "state_size": state_size,
                "receptive_field": rf}
    if w == "auto":
        w, o = default_window(rf, length=T)
        return {"window": w, "overlap": o, "hop": hop, "receptive_field": rf} if T > w else None
    if w <= 2 * rf:
        raise EdgegenError(f"decoder window {w} is too small: it must exceed 2 x the decoder's receptive field "
                           f"({rf} latent frames), i.e. be >= {2 * rf + 1}")
    if w >= T:
        raise EdgegenError(f"decoder window {w} is not shorter than the {T}-frame latent sequence; nothing to "
                           "stream, use --decoder-window whole")
    return {"window": w, "overlap": rf, "hop": hop, "receptive_field": rf}


def check_weights_finite(pipe, components: tuple[str, ...]) -> None:
    """Every parameter and floating buffer of the components to export is finite; else one line naming it."""
    for comp in components:
        module = getattr(pipe, comp)
        for name, t in (*module.named_parameters(), *module.named_buffers()):
            check_finite(t, f"{comp} weight {name!r}")


def _keep_log(log_path: Path, out: Path) -> Path:
    """Copy a failed export's log out of the staging folder (which is about to vanish) into the temp dir."""
    fd, kept = tempfile.mkstemp(prefix=f"edgegen-export-{out.name}-", suffix=".log")
    with open(fd, "wb") as f:
        f.write(log_path.read_bytes())
    return Path(kept)


def _export_component(pipe, comp: str, *, target: Target, recipe: Recipe, path: Path, out: Path, stage,
                      stream: dict | None, verbose: bool, cache: ArtifactCache | None) -> ComponentReport:
    if target.backend == "executorch":
        from edgegen.export import executorch as backend
    else:
        from edgegen.export import litert as backend
    start = time.perf_counter()
    reference = getattr(pipe, comp)
    before = weight_fingerprints(reference)
    module = weight_sharing_copy(reference)  # the backend modifies it; never the caller's pipeline
    if comp == "decoder" and stream and stream.get("mode") == "stateful":
        from edgegen.components.stateful_decoder import StatefulDecoder

        # ExecuTorch: 2-D convolutions, which XNNPACK keeps channels-last and quantizes (see oobleck.Decoder2D);
        # LiteRT: its own convolutions (dynamic-range int8 ones too), ConvTransposes as GEMMs
        # (litert.decoder_gemm_layers)
        if target.backend == "executorch":
            module = StatefulDecoder(module, window=stream["window"], layout="nc1l")
        else:
            module = StatefulDecoder(module, window=stream["window"],
                                     gemm_layers=backend.decoder_gemm_layers(module, recipe.resolved_rules(comp, target)))
    example = example_inputs(pipe, comp, stream=stream)
    rules = recipe.resolved_rules(comp, target)
    lower = lambda: _lower(backend, comp, module, example, path, rules=rules, out=out, target=target,  # noqa: E731
                           stage=stage, verbose=verbose)
    if cache is None:
        applied, fraction = lower()
    else:
        key = cache.key(backend=target.backend, component=comp, module=module, weights=before, example=example,
                        target=target, rules=rules, stream=stream)
        with cache.claimed(key):
            reused = not verbose and cache.fetch(key, path)  # --verbose shows the converter, so it converts
            if reused:
                stage(comp, f"reused from {cache.root}")
                applied, fraction = reused
            else:
                applied, fraction = lower()
                cache.store(key, path, applied, fraction)
    del module, example
    release_memory()  # hand the converter's freed heap back before the next component (or verification)
    check_weights_untouched(reference, before, comp)
    return ComponentReport(component=comp, file=path.name, size=path.stat().st_size,
                           seconds=time.perf_counter() - start, delegated_fraction=fraction, schemes=_count(applied))


def _lower(backend, comp: str, module: nn.Module, example: tuple, path: Path, *, rules, out: Path, target: Target,
           stage, verbose: bool) -> tuple[dict[str, str], float | None]:
    """The backend's export_component, its console output in the staging folder's log (kept on a failure)."""
    log_path = path.parent / LOG_NAME
    with ConverterLog(log_path, verbose=verbose) as log:
        try:
            return backend.export_component(comp, module, example, path, rules=rules,
                                            on_stage=log.passthrough(lambda s: stage(comp, s)))
        except EdgegenError:
            raise
        except Exception as exc:
            tail = log.tail()  # what the converter printed; the traceback goes to the kept log only
            log.record_exception()
            kept = _keep_log(log_path, out)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConversionError(f"{comp}: {target.backend} conversion failed ({type(exc).__name__}: {first}); "
                                  f"the converter log is kept at {kept}", log_tail=tail, log_path=kept) from exc


def weight_sharing_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` for a backend to modify: new module objects throughout, each weight a new tensor object
    on the original's storage. Backends change weights by assigning new tensors (quantization, fp16 casts,
    folded forms), which only the copy sees, so the reference stays as it was without a second copy of its
    weights at the export's peak (the DiT: 1.36 GB at full size). A write into the shared storage would reach the
    reference: `check_weights_untouched` catches one."""
    memo = {}
    for t in (*module.parameters(), *module.buffers()):
        alias = t.detach()  # same storage and version counter: an in-place write through it bumps t._version
        memo[id(t)] = nn.Parameter(alias, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else alias
    return copy.deepcopy(module, memo)


def weight_fingerprints(module: nn.Module) -> dict[str, tuple[int, int, bytes]]:
    """Each weight's storage address, in-place write count and sha256, for `check_weights_untouched` (hashing
    runs at ~2 GB/s: under a second for the full-size DiT)."""
    return {name: (t.data_ptr(), t._version, _digest(t)) for name, t in _weights(module)}


def check_weights_untouched(module: nn.Module, before: dict[str, tuple[int, int, bytes]], component: str) -> None:
    """Every weight of the reference `module` holds the bytes it held `before` the export. A tensor written to
    (its version moved) is hashed again: converters may rewrite constants in place with the same values
    (litert-torch clamps every constant to the finite range, a no-op on the finite weights export requires).
    Else EdgegenError naming the tensor (an edgegen bug: the bundle would be verified against changed weights)."""
    for name, t in _weights(module):
        ptr, version, digest = before.get(name, (t.data_ptr(), t._version, b""))
        if (t.data_ptr(), t._version) != (ptr, version) and _digest(t) != digest:
            raise EdgegenError(f"{component}: exporting changed the reference's weight {name!r}; this is an edgegen "
                               "bug, please report it with the command line")


def _weights(module: nn.Module):
    return (*module.named_parameters(), *module.named_buffers())


def _digest(t) -> bytes:
    import hashlib

    return hashlib.sha256(t.detach().contiguous().view(-1).view(torch.uint8).numpy()).digest()


def export_bundle(pipe, *, target: Target, recipe: Recipe, out: Path, components: tuple[str, ...] = COMPONENTS,
                  force: bool = False, make_zip: bool = False, decoder_window: str | int | None = "auto",
                  decoder_stream: str = "stateful", verbose: bool = False, verify: bool = True,
                  progress: Callable[[str, str], None] = lambda comp, stage: None) -> ExportReport:
    """`verbose` leaves the converters' output on the console instead of the staging folder's log file; `verify`
    runs the staged bundle against `pipe` before publishing it (VerificationError, nothing written, on a miss)."""
    out = Path(out)
    unknown = [c for c in components if c not in ARTIFACTS]
    if unknown:
        raise EdgegenError(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(ARTIFACTS)}")
    components = tuple(c for c in ARTIFACTS if c in components)  # pipeline order, each once
    check_supported(recipe, target, components)
    check_bundle_output(out, force=force, make_zip=make_zip)
    cache = ArtifactCache.from_env()
    stream = resolve_decoder_window(pipe, decoder_window, decoder_stream) if "decoder" in components else None
    check_weights_finite(pipe, components)
    start = time.perf_counter()
    reports = []
    with _staging(out, force=force) as tmp:
        artifacts = {}
        for comp in components:
            path = tmp / f"{comp}{EXTENSIONS[target.backend]}"
            rep = _export_component(pipe, comp, target=target, recipe=recipe, path=path, out=out, stage=progress,
                                    stream=stream, verbose=verbose, cache=cache)
            reports.append(rep)
            entry = {**file_entry(path), **io_spec(pipe, comp, stream=stream), "schemes": rep.schemes,
                     "compute_precision": profile_precision(target, rep.schemes)}
            if rep.delegated_fraction is not None:
                entry["delegated_fraction"] = round(rep.delegated_fraction, 4)
            artifacts[comp] = ArtifactEntry.from_json(entry)
        (tmp / LOG_NAME).unlink(missing_ok=True)  # the bundle holds what the manifest lists, nothing else
        shutil.copy(pipe.tokenizer.path, tmp / "spiece.model")
        manifest = build_manifest(pipe, target=target, recipe=recipe, artifacts=artifacts,
                                  tokenizer=file_entry(tmp / "spiece.model"), stream=stream)
        write_manifest(tmp, manifest)
        if verify:  # the bundle as written (a reader's checks included); the manifest is rewritten with the figures
            from edgegen.export.verify import verify_bundle

            with ConverterLog(tmp / LOG_NAME, verbose=verbose) as log:  # the runtimes' console chatter, as above
                verification = verify_bundle(tmp, pipe, label=str(out),
                                             on_stage=log.passthrough(lambda s: progress("verify", s)))
            (tmp / LOG_NAME).unlink(missing_ok=True)
        else:
            verification = {"verified": False, "reason": "--no-verify"}
        write_manifest(tmp, dataclasses.replace(manifest, verification=verification))
        if make_zip:  # written before the folder is renamed: a failure here leaves neither
            zip_bundle(tmp, out.with_suffix(".zip"))
    return ExportReport(out=out, components=reports, peak_rss_mb=peak_rss_mb(),
                        seconds=time.perf_counter() - start, verification=verification)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")


def build_manifest(pipe, *, target: Target, recipe: Recipe, artifacts: dict[str, ArtifactEntry], tokenizer: dict,
                   stream: dict | None = None) -> Manifest:
    from edgegen.sampler import LOGSNR_MAX, LOGSNR_MIN

    if target.backend == "executorch":
        from edgegen.export.executorch import runtime_version
    else:
        from edgegen.export.litert import runtime_version
    src = pipe.source
    return Manifest(
        # the lowest version that describes this bundle (see manifest.py): 3 stateful stream, 2 overlapped, 1 whole
        schema_version=(3 if stream.get("mode") == "stateful" else 2) if stream else 1,
        edgegen_version=edgegen.__version__,
        backend=target.backend,
        runtime_version=runtime_version(),
        target=target,
        recipe=recipe,
        source=Source(model=src.model, config_sha256=src.config_sha256, checkpoint_sha256=src.checkpoint_sha256,
                      t5=src.t5, t5_precision=src.t5_precision),
        sample_rate=pipe.sample_rate,
        channels=2,
        latent_length=pipe.latent_length,
        max_seconds=math.floor(pipe.max_seconds * 1e4) / 1e4,  # rounded down: never past the decoder's output
        sampler=SamplerSpec(type="pingpong", steps=8, logsnr_max=LOGSNR_MAX, logsnr_min=LOGSNR_MIN),
        tokenizer=TokenizerEntry(**tokenizer, max_length=pipe.config.max_length, eos_id=pipe.tokenizer.eos_id,
                                 pad_id=pipe.tokenizer.pad_id),
        artifacts=artifacts,
        decoder_stream=DecoderStream(**stream) if stream else None,
    )
