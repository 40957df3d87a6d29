"""`edgegen export` as one function: check everything that can be checked before the model loads, load it, tune the
decoder's float layers when asked (`sensitivity_floor`), export and verify the bundle, and format the report.

    report = export_model(model="random:tiny", target="host-litert", recipe="int8", output=Path("out"))
    print(format_export(report))          # one row per artifact, the verification figures, the `wrote` line

`log` gets the progress lines (`[   1.2s] dit           quantize`); a converter's failure logs its output's last
lines there (unless `verbose` showed them already) before the ConversionError goes up. A verification gate that
fails raises VerificationError (a GateFailed: exit status 1, its table on stdout). SIGTERM during the export
removes the staging folder as Ctrl-C does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgegen.errors import EdgegenError


def export_model(*, model: str, t5: Path | None = None, t5_precision: str = "fp16", target: str, recipe: str,
                 output: Path, components: str = "text_encoder,dit,decoder", audio_to_audio: bool = False,
                 force: bool = False, make_zip: bool = False, decoder_window: str = "auto",
                 decoder_stream: str = "stateful", verbose: bool = False, verify: bool = True,
                 sensitivity_floor: float | None = None, log: Callable[[str], None] = lambda line: None):
    """The ExportReport of a bundle of `components` (comma-separated; `audio_to_audio` adds the encoder) exported
    from `model` for `target` with `recipe` (names or .toml paths) into `output`."""
    from edgegen.common import ARTIFACTS, ENCODER, sigterm_unwinds
    from edgegen.export import ConversionError, export_bundle, parse_decoder_window
    from edgegen.export.reuse import ArtifactCache
    from edgegen.export.staging import check_bundle_output
    from edgegen.export.support import check_supported
    from edgegen.pipeline import load_pipeline
    from edgegen.recipes import load_recipe, load_target

    tgt, rec = load_target(target), load_recipe(recipe)
    comps = tuple(c.strip() for c in components.split(",") if c.strip()) + ((ENCODER,) if audio_to_audio else ())
    if bad := [c for c in comps if c not in ARTIFACTS]:
        raise EdgegenError(f"unknown component(s) {', '.join(bad)}; choose from {', '.join(ARTIFACTS)}")
    check_supported(rec, tgt, comps)  # before the (slow) model load
    parse_decoder_window(decoder_window)
    check_bundle_output(output, force=force, make_zip=make_zip)  # --force replaces only a bundle edgegen made
    ArtifactCache.from_env()  # EDGEGEN_EXPORT_CACHE, when set, names a writable folder (export_bundle checks it too)
    if sensitivity_floor is not None and ("decoder" not in comps or
                                          not any(r.scheme == "int8" for r in rec.resolved_rules("decoder", tgt))):
        raise EdgegenError(f"--sensitivity-floor chooses the decoder's float layers, but recipe {rec.name!r} does "
                           "not quantize the decoder to int8 here; use e.g. --recipe fast")
    log(f"loading {model}")
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    if ENCODER not in comps:
        pipe.release(ENCODER)  # neither exported nor verified: its weights would only add to the export's peak
    start = time.perf_counter()
    progress = lambda comp, stage: log(f"[{time.perf_counter() - start:7.1f}s] {comp:<13} {stage}")  # noqa: E731
    if sensitivity_floor is not None:
        rec = _tuned_decoder(rec, pipe, floor_db=sensitivity_floor, backend=tgt.backend, progress=progress, log=log)
    with sigterm_unwinds() as check_sigterm:
        try:
            return export_bundle(pipe, target=tgt, recipe=rec, out=output, components=comps, force=force,
                                 make_zip=make_zip, decoder_window=decoder_window, decoder_stream=decoder_stream,
                                 verbose=verbose, verify=verify,
                                 progress=lambda comp, stage: (check_sigterm(), progress(comp, stage)))
        except ConversionError as exc:
            for line in [] if verbose else exc.log_tail:
                log(f"  | {line}")
            raise


def _tuned_decoder(rec, pipe, *, floor_db: float, backend: str, progress, log):
    """`rec` with the decoder's float layers chosen for this checkpoint (`edgegen.sensitivity.tuned_recipe`)."""
    from edgegen.sensitivity import tuned_recipe

    rec, _ = tuned_recipe(rec, pipe, floor_db=floor_db, backend=backend,
                          progress=lambda line: progress("decoder", f"sensitivity: {line.split(': ', 1)[-1]}"))
    floats = [r.pattern for r in rec.components["decoder"].rules if r.scheme == "fp32"]
    log(f"sensitivity: decoder keeps {len(floats)} layer(s) float for {floor_db:g} dB: {', '.join(floats) or 'none'}")
    return rec


def format_export(report) -> str:
    """The table `edgegen export` prints: one row per artifact, the verification figures, the `wrote` line."""
    lines = [f"{'artifact':<14}{'file':<22}{'size MB':>10}{'time s':>9}{'XNNPACK':>9}  schemes"]
    for c in report.components:
        frac = "-" if c.delegated_fraction is None else f"{c.delegated_fraction:.0%}"
        schemes = ", ".join(f"{k} x{v}" for k, v in c.schemes.items()) or "fp32"
        lines.append(f"{c.component:<14}{c.file:<22}{c.size / 1e6:>10.2f}{c.seconds:>9.1f}{frac:>9}  {schemes}")
    v = report.verification
    if v["verified"]:
        figures = ", ".join(f"{c} {e['sqnr_db'] if isinstance(e['sqnr_db'], str) else round(e['sqnr_db'], 1)} dB"
                            for c, e in v["components"].items())
        lines.append(f"verified against {v['reference']} in {v['seconds_taken']:.1f}s: {figures} (all gates pass)")
    else:
        lines.append("not verified (--no-verify): run `edgegen parity` on the bundle before shipping it")
    lines.append(f"wrote {report.out} in {report.seconds:.1f}s (peak RSS {report.peak_rss_mb:.0f} MB)")
    return "\n".join(lines)
