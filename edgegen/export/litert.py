"""LiteRT backend: litert-torch conversion, ai-edge-quantizer dynamic-range int8 / int4 or weight-only int8w.

    schemes, _ = export_component("dit", module, example_inputs, out_path, rules=rules, on_stage=print)

`export_component` is the entry point `edgegen.export` calls (the ExecuTorch backend has the same one).
Dynamic-range quantization applies to FULLY_CONNECTED ops: int8 per-channel int8 weights, int4 blockwise int4
weights (32-256), activations quantized on the fly; int8w keeps int8 weights in the file and computes in fp32
(an explicit DEQUANTIZE of each weight; size only). A component whose rules all give one scheme quantizes every
such op alike; rules that mix schemes go op by op, each op traced back to its module through the module path
litert-torch records in its scope (`_trace_ops`). The decoder keeps its Conv1d as CONV_2D ops, quantized the same
way (int8: LiteRT's own dynamic-range convolution, faster than the GEMM form on a CPU with int8 dot products; one
activation scale per input, which edgegen.sensitivity simulates for this backend); a ConvTranspose (whose
CONV_2D_TRANSPOSE ai-edge-quantizer cannot quantize, and which runs faster as a GEMM in fp32 too) or an int4
Conv1d runs as one GEMM instead (`decoder_gemm_layers`), whole-sequence and streaming decoders alike. fp16
compute is a runtime flag (XNNPACK FORCE_FP16) on the phone, so the file stays fp32.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch
from torch import nn

from edgegen.errors import EdgegenError
from edgegen.export.wrappers import wrap
from edgegen.recipes import QUANTIZED_SCHEMES, Rule


def _op_config(scheme: str, group_size: int):
    """int8 / int4: dynamic range (weights quantized, activations quantized on the fly, integer GEMM); int8w:
    weight-only (the int8 weight goes through an explicit DEQUANTIZE into a float FULLY_CONNECTED)."""
    from ai_edge_quantizer import qtyping

    gran = (qtyping.QuantGranularity.CHANNELWISE if scheme in ("int8", "int8w")
            else getattr(qtyping.QuantGranularity, f"BLOCKWISE_{group_size}"))
    weights = qtyping.TensorQuantizationConfig(num_bits=4 if scheme == "int4" else 8, symmetric=True,
                                               granularity=gran, dtype=qtyping.TensorDataType.INT)
    weight_only = scheme == "int8w"
    return qtyping.OpQuantizationConfig(
        weight_tensor_config=weights, explicit_dequantize=weight_only,
        compute_precision=qtyping.ComputePrecision.FLOAT if weight_only else qtyping.ComputePrecision.INTEGER)


# GEMM-form convolutions (FULLY_CONNECTED) and conv-form ones (CONV_2D): the ops dynamic-range quantization applies to
FC, CONV = "FULLY_CONNECTED", "CONV_2D"


def _op_scopes(model_bytes: bytes, op_name: str = FC) -> list[tuple[str, int]]:
    """(op scope, weight input width) of every `op_name` op in the flatbuffer."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(model_bytes)
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            if tfl.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode) == op_name:
                out.append((tfl.get_op_scope(op, sg.tensors), int(sg.tensors[op.inputs[1]].shape[-1])))
    return out


def _fc_layers(model_bytes: bytes, wrapper: nn.Module) -> dict[str, str]:
    """FULLY_CONNECTED op scope -> the wrapper's Linear (its canonical path) the op came from (`_trace_ops`)."""
    return _trace_ops(model_bytes, wrapper, FC, {id(m): n for n, m in wrapper.named_modules()
                                                 if isinstance(m, nn.Linear)}, "Linear")


def _trace_ops(model_bytes: bytes, wrapper: nn.Module, op_name: str, canonical: dict[int, str],
               kind: str) -> dict[str, str]:
    """`op_name` op scope -> the module of `canonical` (id -> canonical path in the wrapper) the op came from.
    litert-torch names an op's scope after the chain of module calls that reached it, one `<class>_<attribute>`
    segment per call below the wrapper: `decoder.layers.1.2.linear` called level by level gives segments ending
    in _decoder, _layers, _1, _2, _linear; a module that calls a grandchild directly skips levels (the DiT calls
    `transformer.project_in`: _dit, _project_in). So a module owns an op when the segments match its path's parts
    in order, skipping parts, the last segment matching the last part. An op no module owns (or two claim) is an
    EdgegenError: per-layer rules need every op traced."""
    paths = [(n.split("."), id(m)) for n, m in wrapper.named_modules(remove_duplicate=False) if id(m) in canonical]

    def owns(parts: list[str], segments: list[str], skipping: bool) -> bool:
        if not segments or not segments[-1].endswith("_" + parts[-1]):
            return False
        if not skipping:
            return len(parts) == len(segments) and all(s.endswith("_" + p) for s, p in zip(segments, parts))
        rest = iter(parts[:-1])
        return all(any(seg.endswith("_" + part) for part in rest) for seg in segments[:-1])

    out = {}
    for scope, _ in _op_scopes(model_bytes, op_name):
        # a scope may join several call chains with ';' (ops the converter fused): any of them may own the op
        chains = [part.split("/")[1:] for part in scope.split(";") if "/" in part]
        for skipping in (False, True):  # the exact path first; skipped levels only when no path matches exactly
            owners = {mid for parts, mid in paths if any(owns(parts, segments, skipping) for segments in chains)}
            if owners:
                break
        if len(owners) != 1:
            raise EdgegenError(f"LiteRT per-layer quantization: the {op_name} op {scope!r} could not be traced "
                               f"to one {kind} ({len(owners)} candidates); use one scheme for the whole component")
        out[scope] = canonical[owners.pop()]
    return out


def quantize_tflite_layers(model_bytes: bytes, *, rule_for_op: dict[str, Rule],
                           conv_rule_for_op: dict[str, Rule] | None = None) -> bytes:
    """Dynamic-range quantization op by op: each FULLY_CONNECTED scope in `rule_for_op` (CONV_2D scope in
    `conv_rule_for_op`) takes its rule's int8 / int4 / int8w config (matched by its exact scope); ops absent from
    them, or with an fp32 rule, stay float."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    rm = recipe_manager.RecipeManager()
    for op, rules in ((qtyping.TFLOperationName.FULLY_CONNECTED, rule_for_op),
                      (qtyping.TFLOperationName.CONV_2D, conv_rule_for_op or {})):
        for scope, rule in rules.items():
            if rule.scheme in QUANTIZED_SCHEMES:
                rm.add_quantization_config(regex=f"^{re.escape(scope)}$", operation_name=op,
                                           op_config=_op_config(rule.scheme, rule.group_size))
    return bytes(quantizer.Quantizer(model_bytes, rm.get_quantization_recipe()).quantize().quantized_model)


def quantize_tflite(model_bytes: bytes, *, rule: Rule) -> tuple[bytes, int]:
    """Dynamic-range quantization of every FULLY_CONNECTED op (ai-edge-quantizer).

    For int4, an op whose input width the block size does not divide takes int8 per-channel instead
    (matched by its exact op scope). Returns the quantized flatbuffer and the number of such fallbacks.
    """
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    rm = recipe_manager.RecipeManager()
    fc = qtyping.TFLOperationName.FULLY_CONNECTED
    rm.add_quantization_config(regex=".*", operation_name=fc, op_config=_op_config(rule.scheme, rule.group_size))
    fallbacks = [scope for scope, width in _op_scopes(model_bytes) if rule.scheme == "int4" and width % rule.group_size]
    for scope in fallbacks:  # later configs win where their regex matches
        rm.add_quantization_config(regex=f"^{re.escape(scope)}$", operation_name=fc, op_config=_op_config("int8", 0))
    data = quantizer.Quantizer(model_bytes, rm.get_quantization_recipe()).quantize().quantized_model
    return bytes(data), len(fallbacks)


def _label(rule: Rule | None) -> str:
    if rule is None or rule.scheme not in QUANTIZED_SCHEMES:
        return "fp32"
    return f"int4 g{rule.group_size}" if rule.scheme == "int4" else rule.scheme


def _flatbuffer(model, out_path: Path) -> bytes:
    """The converted model's flatbuffer, written by the converter to a file beside `out_path` and read back:
    `model_content()` holds the converter's serialized copy and the Python bytes of it at once (full-size DiT
    conversion peak 6295 vs 5470 MB this way, benchmarks/JOURNAL.md)."""
    tmp = out_path.with_name(f".{out_path.stem}.float.tflite")
    try:
        model.export(str(tmp))
        return tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


# litert-torch's `lightweight_conversion`: constants over 1 MB become MLIR resources on the tensors' own memory
# instead of copies inside the module. Full-size DiT (benchmarks/memory/litert_convert_memory.py): conversion peak
# 6149 vs 8876 MB, same ops, outputs identical (max |diff| 0), same DiT step time (0.131 s both)
LIGHTWEIGHT_CONVERSION = True


def export_tflite(wrapper: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_path: Path, *,
                  rules: tuple[Rule, ...], on_stage=lambda stage: None,
                  sources: dict[str, str] | None = None,
                  conv_sources: dict[str, str] | None = None) -> dict[str, str]:
    """Convert and write `out_path`, quantized by the component's rules; returns layer name -> scheme applied.

    Rules of one scheme quantize every FULLY_CONNECTED op alike; rules that mix schemes (per layer) quantize
    each op by the first rule matching its Linear's name: `sources` maps a Linear's path in the wrapped
    component to the reference name the rules match (a decoder's GEMM form), else the path itself is the name.
    `conv_sources` maps the paths of modules that compute a convolution as a CONV_2D op (a streaming decoder's
    conv form) to their reference names: their ops are quantized by the rule matching that name."""
    import litert_torch

    rule = next((r for r in rules if r.scheme in QUANTIZED_SCHEMES), None)
    per_layer = len({(r.scheme, r.granularity) for r in rules}) > 1 or (rule is not None and bool(conv_sources))
    names = list(inspect.signature(wrapper.forward).parameters)
    on_stage("trace")
    with torch.no_grad():
        model = litert_torch.convert(wrapper.eval(), sample_kwargs=dict(zip(names, example_inputs)),
                                     lightweight_conversion=LIGHTWEIGHT_CONVERSION)
    data = _flatbuffer(model, Path(out_path))
    del model
    linears = [fqn for fqn, m in wrapper.named_modules() if isinstance(m, nn.Linear)]
    prefix = next((n + "." for n, _ in wrapper.named_children()), "")  # the wrapper's one child: the component

    def name_of(fqn: str) -> str:
        inner = fqn[len(prefix):] if fqn.startswith(prefix) else fqn
        return (sources or {}).get(inner, inner)

    convs = {prefix + path: name for path, name in (conv_sources or {}).items()}
    applied = {name_of(fqn): "fp32" for fqn in linears} | {name: "fp32" for name in convs.values()}
    if per_layer:
        on_stage("quantize")
        rule_for = {fqn: next((r for r in rules if r.matches(name_of(fqn))), None) for fqn in linears}
        conv_rule = {fqn: next((r for r in rules if r.matches(name)), None) for fqn, name in convs.items()}
        ops = _fc_layers(data, wrapper)
        conv_ops = _trace_ops(data, wrapper, CONV, {id(wrapper.get_submodule(fqn)): fqn for fqn in convs},
                              "convolution") if convs else {}
        data = quantize_tflite_layers(
            data, rule_for_op={scope: rule_for[fqn] for scope, fqn in ops.items() if rule_for[fqn] is not None},
            conv_rule_for_op={scope: conv_rule[fqn] for scope, fqn in conv_ops.items() if conv_rule[fqn] is not None})
        traced, conv_traced = set(ops.values()), set(conv_ops.values())
        applied = {name_of(fqn): _label(rule_for[fqn]) if fqn in traced else "fp32 (no FULLY_CONNECTED op)"
                   for fqn in linears}
        for fqn, name in convs.items():
            quantized = conv_rule[fqn] is not None and conv_rule[fqn].scheme in QUANTIZED_SCHEMES
            applied[name] = (_label(conv_rule[fqn]) if fqn in conv_traced or not quantized
                             else "fp32 (no CONV_2D op)")
    elif rule is not None:
        on_stage("quantize")
        label = _label(rule)
        narrow = {fqn for fqn, m in wrapper.named_modules()
                  if isinstance(m, nn.Linear) and rule.scheme == "int4" and m.in_features % rule.group_size}
        applied = {name_of(fqn): ("int8 (width not divisible by the int4 group)" if fqn in narrow else label)
                   for fqn in linears}
        data, _ = quantize_tflite(data, rule=rule)
    on_stage("serialize")
    Path(out_path).write_bytes(data)
    return applied


def export_component(component: str, module: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_path: Path, *,
                     rules: tuple[Rule, ...], on_stage=lambda stage: None) -> tuple[dict[str, str], None]:
    """Write `out_path` from `module` (a copy) under `rules` (resolved for the target). Returns (Linear fqn ->
    scheme applied, None: LiteRT reports no delegation fraction at export time). An fp16 rule leaves the file
    fp32: the runtime computes in fp16 where the target asks for it."""
    sources = conv_sources = None
    if component == "decoder":
        # convolutions stay convolutions (LiteRT's dynamic-range CONV_2D for int8), but for those
        # decoder_gemm_layers names, which take their GEMM form (one Linear, quantized under the conv's reference
        # name); a streaming decoder was built that way, a whole-sequence one is changed here (it is a copy)
        from edgegen.components.oobleck import OobleckDecoder, gemm_sources, with_gemm_layers

        if isinstance(module, OobleckDecoder):
            sources, conv_sources = with_gemm_layers(module, decoder_gemm_layers(module, rules))
        else:
            sources = gemm_sources(module)
            conv_sources = module.conv_sources() if hasattr(module, "conv_sources") else None
    applied = export_tflite(wrap(component, module), example_inputs, out_path, rules=rules, on_stage=on_stage,
                            sources=sources, conv_sources=conv_sources)
    if any(r.scheme == "fp16" for r in rules):
        applied = {"*": "fp16"}
    return applied, None


# what a Conv1d stays a CONV_2D op under (fp16 is a runtime flag); other schemes take the GEMM form
CONV_SCHEMES = ("fp32", "fp16", "int8", "int8w")


def decoder_gemm_layers(decoder: nn.Module, rules: tuple[Rule, ...]) -> set[str]:
    """The convolutions of `decoder` a LiteRT decoder computes as a GEMM under `rules`: every ConvTranspose1d
    (ai-edge-quantizer cannot quantize CONV_2D_TRANSPOSE, and in fp32 the GEMM form ran faster: a 60-frame
    full-size window 0.877 vs 1.042 s, benchmarks/JOURNAL.md) and a Conv1d whose scheme CONV_2D does not take.
    Every other convolution stays a convolution (fp32 or LiteRT's own dynamic-range CONV_2D)."""
    out = set()
    for name, m in decoder.named_modules():
        rule = next((r for r in rules if r.matches(name)), None)
        scheme = rule.scheme if rule is not None else "fp32"
        if isinstance(m, nn.ConvTranspose1d) or isinstance(m, nn.Conv1d) and scheme not in CONV_SCHEMES:
            out.add(name)
    return out


def runtime_version() -> str:
    from importlib.metadata import version

    return f"ai-edge-litert {version('ai-edge-litert')} (litert-torch {version('litert-torch')})"
