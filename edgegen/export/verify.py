"""Exports verify themselves: the staged bundle, run in its own runtime, against the reference it came from.

    verification = verify_bundle(staged_dir, pipe, on_stage=print)   # the manifest's `verification` object
    # or VerificationError(message, table=format_report(report), report=report): nothing is published

This is `edgegen parity` (edgegen/parity.py) run inside `export_bundle` before the staging folder is renamed:
real prompts through the bundle's tokenizer and text encoder, the DiT at each step of the bundle's own trajectory,
the decoder on the latents it ended in (and the encoder on parity's init signal), each gated like parity gates it:
an fp32 component within 1e-4 relative error, a quantized or fp16 one at its recipe's `sqnr_floor_db`. A component
below its gate, a non-finite output anywhere, a tokenizer whose ids differ, or (all-fp32 bundles only) end to end
beyond 1e-3 refuses the bundle; the end-to-end rows of quantized bundles are reported, never gated.

A bundle of only some components (`export --components`) is verified the same way, the missing stages run by the
reference itself (stand-ins with the artifacts' contract), so each exported artifact still sees representative
inputs; only the exported components' rows are kept (`end_to_end.reference_components` names the stand-ins).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgegen.bundle import Bundle, open_bundle
from edgegen.common import COMPONENTS
from edgegen.errors import GateFailed
from edgegen.noise import gaussian_noise
from edgegen.manifest import ArtifactEntry, TensorSpec
from edgegen.parity import PROMPTS, ParityReport, Row, build_report, capture_bundle, format_report, parity_seconds

METHOD = ("edgegen parity: each artifact in its runtime vs its reference component on real prompts, the DiT "
          "along the bundle's own trajectory, the decoder on the latents it ended in")
_FIGURES = ("sqnr_db", "rel_err", "max_abs", "cosine")


class VerificationError(GateFailed):
    """The staged bundle missed a gate; `table` is parity's per-stage table, `report` the whole parity report."""

    def __init__(self, message: str, *, table: str, report: ParityReport):
        super().__init__(message, table=table)
        self.report = report


def _reference_artifact(pipe, component: str):
    """The reference `component` behind an artifact's contract (same input names, shapes and outputs)."""
    from edgegen.export.wrappers import io_spec, wrap
    from edgegen.runtime import Artifact

    module = wrap(component, getattr(pipe, component))
    io = io_spec(pipe, component)
    # the artifact's contract without a file: nothing reads file, sha256 or size of a stand-in
    spec = ArtifactEntry(file="", sha256="", size=0, inputs=tuple(TensorSpec.from_json(i) for i in io["inputs"]),
                         outputs=tuple(TensorSpec.from_json(o) for o in io["outputs"]))

    @torch.no_grad()
    def call(arrays: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        out = module(*(torch.from_numpy(a) for a in arrays))
        return out if isinstance(out, tuple) else (out,)

    return Artifact(spec, call, load_s=0.0)


def _open(root: Path, pipe):
    """(BundlePipeline over the staged bundle, the components the reference stands in for)."""
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.runtime import load_artifacts

    bundle = open_bundle(root)  # the manifest's schema and every checksum, as a reader will check them
    threads = bundle.manifest.target.threads
    artifacts = load_artifacts(bundle, threads=threads)
    missing = [c for c in COMPONENTS if c not in bundle.components]
    if missing:
        stand_ins = {c: _reference_artifact(pipe, c) for c in missing}
        manifest = dataclasses.replace(bundle.manifest, artifacts={**bundle.manifest.artifacts,
                                                                   **{c: a.spec for c, a in stand_ins.items()}})
        bundle, artifacts = Bundle(root=bundle.root, manifest=manifest), {**artifacts, **stand_ins}
    return BundlePipeline(bundle, artifacts, 0.0, threads=threads), missing


def _figures(row: Row) -> dict:
    """A component's line in the manifest's `verification`: its gate, the four figures, passed (and MR-STFT, why)."""
    entry = row.to_json()
    out = {"gate": entry["gate"], **{k: entry["metrics"][k] for k in _FIGURES}, "passed": row.passed}
    if row.audio:
        out["mrstft"] = entry["mrstft"]
    return {**out, "reason": row.reason} if row.reason else out


def _row(row: Row) -> dict:
    """A whole-chain row in `verification` (`passed` null where it is not gated)."""
    entry = row.to_json()
    out = {"gated": entry["gated"], **{k: entry["metrics"][k] for k in _FIGURES}, "mrstft": entry["mrstft"],
           "passed": row.passed}
    return {**out, "reason": row.reason} if row.reason else out


def _failure(row: Row) -> str:
    """One clause: which stage missed what, by how much."""
    if row.reason:
        return f"{row.name}: {row.reason}"
    m, gate = row.metrics, row.gate
    if not row.component:
        return f"{row.name}: relative error {m.rel_err:.2e} > {gate.threshold:g} (all components fp32)"
    if gate.metric == "rel_err":
        return (f"{row.name}: relative error {m.rel_err:.2e} > {gate.threshold:g} "
                f"({m.rel_err / gate.threshold:.0f}x the fp32 tolerance)")
    return (f"{row.name}: SQNR {m.sqnr_db:.1f} dB < the recipe's floor {gate.threshold:g} dB "
            f"({gate.threshold - m.sqnr_db:.1f} dB short)")


@torch.no_grad()
def verify_bundle(root: Path, pipe, *, seed: int = 0, seconds: float | None = None,
                  prompts: tuple[str, ...] = PROMPTS, label: str | None = None,
                  on_stage: Callable[[str], None] = lambda stage: None) -> dict:
    """Parity of the (staged) bundle in `root` against `pipe`; the manifest's `verification` object when every gate
    holds, else VerificationError naming each stage that missed and by how much. `label` names the bundle in the
    table (the output path, rather than the staging folder)."""
    from edgegen.runtime import release_memory

    start = time.perf_counter()
    bp, stand_ins = _open(Path(root), pipe)
    try:
        m = bp.bundle.manifest
        seconds = parity_seconds(seconds, pipe=pipe, manifest=m)
        exported = [c for c in bp.bundle.components if c not in stand_ins]
        on_stage(f"parity of {', '.join(exported)} on {len(prompts)} prompts, {bp.steps} DiT steps, "
                 f"{seconds:.2f} s of audio" + (f" (reference {', '.join(stand_ins)})" if stand_ins else ""))
        noise = gaussian_noise(seed, (bp.steps, *bp.latent_shape))
        outputs = capture_bundle(bp, prompts=prompts, seconds=seconds, noise=noise, seed=seed)
        report = build_report(outputs, pipe, m, bundle=label or str(root))
    finally:
        del bp
        release_memory()
    report = report.without(stand_ins)
    failed = [_failure(r) for r in report.rows if r.passed is False]
    if not report.tokens_match:
        failed.append("tokenizer: the bundle's spiece.model gives different ids than the model's")
    if failed:
        below_floor = any(r.gate.metric == "sqnr_db" and r.passed is False and not r.reason
                          for r in report.components.values())
        advice = ("keep more layers in float (rules with scheme fp32 in the recipe), use a recipe with a lower floor"
                  if below_floor else "the converted model no longer computes what the reference does: check the "
                  "target and recipe, or report it with the per-stage table")
        raise VerificationError(f"export verification failed, nothing published: {'; '.join(failed)}. "
                                f"{advice[0].upper()}{advice[1:]}, or pass --no-verify to publish anyway",
                                table=format_report(report), report=report)
    verification = {"verified": True, "method": METHOD, "reference": pipe.source.model, "seed": seed,
                    "seconds": seconds, "prompts": len(prompts), "tokens_match": True,
                    "components": {c: _figures(r) for c, r in report.components.items()},
                    **{r.name: _row(r) for r in report.rows if not r.component}}
    if stand_ins:
        verification["end_to_end"]["reference_components"] = stand_ins
    verification["seconds_taken"] = round(time.perf_counter() - start, 2)
    on_stage(f"passed in {verification['seconds_taken']:.1f}s")
    return verification
