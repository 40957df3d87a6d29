"""The literal support matrix: which (backend, scheme, granularity, scope) a bundle can be built with.

`scope` is "component" when every rule of a component resolves to one scheme, "layer" when the rules mix
schemes inside a component. Checked before any work, so an unsupported recipe fails in milliseconds.
"""

from __future__ import annotations

from edgegen.errors import EdgegenError
from edgegen.common import ARTIFACTS
from edgegen.recipes import Recipe, Target

_GROUPS = (32, 64, 128, 256)

SUPPORTED: frozenset[tuple[str, str, str, str]] = frozenset(
    [("executorch", "fp32", "-", "layer"),                   # float XNNPACK partitioner
     ("executorch", "fp16", "-", "component"),               # module cast to half, fp32 I/O
     ("executorch", "int8", "per_channel", "layer")]         # torchao 8da8w Linears; decoder convolutions XNNPACK's
                                                             # dynamic int8 (PT2E); dynamic-quant partitioner
    + [("executorch", "int4", f"group{g}", "layer") for g in _GROUPS]   # torchao 8da4w
    + [("litert", "fp32", "-", "layer"),                     # per layer: each FULLY_CONNECTED op by its Linear
       ("litert", "fp16", "-", "component"),                 # XNNPACK FORCE_FP16 at runtime on the phone
       ("litert", "int8", "per_channel", "layer"),           # dynamic range, channelwise
       ("litert", "int8w", "per_channel", "layer")]          # weight-only: DEQUANTIZE into a float FULLY_CONNECTED
    + [("litert", "int4", f"group{g}", "layer") for g in _GROUPS]   # dynamic range, BLOCKWISE_g
)


# Rows that are absent for a known reason, said in the refusal.
WHY_NOT = {("executorch", "int8w"): "ExecuTorch 1.5.1's XNNPACK delegate has no weight-only int8 GEMM: its "
                                    "partitioner takes a dequantized weight only with a quantized activation, so "
                                    "these layers would run in portable kernels; use int8, or int8w on LiteRT"}


def _scope(rules) -> str:
    return "component" if len({(r.scheme, r.granularity) for r in rules}) == 1 else "layer"


def _supported(row: tuple[str, str, str, str]) -> bool:
    backend, scheme, gran, scope = row
    return row in SUPPORTED or (scope == "component" and (backend, scheme, gran, "layer") in SUPPORTED)


def _nearest(row: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
    def score(candidate):
        return (sum(a == b for a, b in zip(candidate, row)) + 2 * (candidate[0] == row[0]) + (candidate[1] == row[1])
                + (candidate[2] == row[2] != "-"))  # the same weight granularity: int8w's nearest is int8
    return max(sorted(SUPPORTED), key=score)


def check_supported(recipe: Recipe, target: Target, components: tuple[str, ...] = ARTIFACTS) -> None:
    from edgegen.xnnpack import check_profile

    check_profile(target)  # run-time settings the backend cannot apply are refused here, not dropped
    for comp in components:
        rules = recipe.resolved_rules(comp, target)
        scope = _scope(rules)
        for rule in rules:
            if (target.backend, comp, rule.scheme) == ("executorch", "decoder", "int4"):
                raise EdgegenError(
                    f"recipe {recipe.name!r} is not supported on {target.name} (executorch): decoder rule "
                    f"{rule.pattern!r} -> int4 (ExecuTorch quantizes the decoder's convolutions as int8 only); use "
                    "int8 or fp32 for decoder layers")
            row = (target.backend, rule.scheme, rule.granularity, scope)
            if not _supported(row):
                near = _nearest(row)
                why = WHY_NOT.get((target.backend, rule.scheme))
                raise EdgegenError(
                    f"recipe {recipe.name!r} is not supported on {target.name} ({target.backend}): {comp} rule "
                    f"{rule.pattern!r} -> {rule.scheme} {rule.granularity} with {scope}-scoped rules"
                    + (f" ({why})" if why else "")
                    + f"; nearest supported row: {near[1]} {near[2]} ({near[3]} scope) on {near[0]}")
