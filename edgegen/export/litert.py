"""LiteRT backend: litert-torch conversion with a component-wide dynamic-range recipe, `.tflite` out.

    schemes, _ = export_component("dit", module, example_inputs, out_path, rules=rules, on_stage=print)

`export_component` is the entry point `edgegen.export` calls (the ExecuTorch backend has the same one).
litert-torch applies its quantization recipe to the whole converted graph (its per-layer scopes only exist
for models built from its own generative layers), so on LiteRT a component takes ONE scheme: the support
matrix refuses per-layer mixes before any work. int8: dynamic range, per-channel int8 weights; int4: dynamic
range, blockwise int4 weights (32-256); fp16 compute is a runtime flag (XNNPACK FORCE_FP16) on the phone, so
the file stays fp32.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch
from torch import nn

from edgegen.export.wrappers import wrap
from edgegen.recipes import Rule


def _op_config(scheme: str, group_size: int):
    from ai_edge_quantizer import qtyping

    gran = (qtyping.QuantGranularity.CHANNELWISE if scheme == "int8"
            else getattr(qtyping.QuantGranularity, f"BLOCKWISE_{group_size}"))
    weights = qtyping.TensorQuantizationConfig(num_bits=8 if scheme == "int8" else 4, symmetric=True,
                                               granularity=gran, dtype=qtyping.TensorDataType.INT)
    return qtyping.OpQuantizationConfig(weight_tensor_config=weights, compute_precision=qtyping.ComputePrecision.INTEGER,
                                        explicit_dequantize=False)


def _fc_scopes(model_bytes: bytes) -> list[tuple[str, int]]:
    """(op scope, weight input width) of every FULLY_CONNECTED op in the flatbuffer."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(model_bytes)
    out = []
    for sg in model.subgraphs:
        for op in sg.operators:
            if tfl.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode) == "FULLY_CONNECTED":
                out.append((tfl.get_op_scope(op, sg.tensors), int(sg.tensors[op.inputs[1]].shape[-1])))
    return out


def quantize_tflite(model_bytes: bytes, *, rule: Rule) -> tuple[bytes, int]:
    """Dynamic-range quantization of every FULLY_CONNECTED op (ai-edge-quantizer).

    For int4, an op whose input width the block size does not divide takes int8 per-channel instead
    (matched by its exact op scope). Returns the quantized flatbuffer and the number of such fallbacks.
    """
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    rm = recipe_manager.RecipeManager()
    fc = qtyping.TFLOperationName.FULLY_CONNECTED
    rm.add_quantization_config(regex=".*", operation_name=fc, op_config=_op_config(rule.scheme, rule.group_size))
    fallbacks = [scope for scope, width in _fc_scopes(model_bytes) if rule.scheme == "int4" and width % rule.group_size]
    for scope in fallbacks:  # later configs win where their regex matches
        rm.add_quantization_config(regex=f"^{re.escape(scope)}$", operation_name=fc, op_config=_op_config("int8", 0))
    data = quantizer.Quantizer(model_bytes, rm.get_quantization_recipe()).quantize().quantized_model
    return bytes(data), len(fallbacks)


def export_tflite(wrapper: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_path: Path, *,
                  rules: tuple[Rule, ...], on_stage=lambda stage: None) -> dict[str, str]:
    """Convert and write `out_path`, quantized by the component's (one) int8 / int4 rule if it has one;
    returns Linear fqn -> scheme applied (for the report)."""
    import litert_torch

    rule = next((r for r in rules if r.scheme in ("int8", "int4")), None)
    names = list(inspect.signature(wrapper.forward).parameters)
    on_stage("trace")
    with torch.no_grad():
        model = litert_torch.convert(wrapper.eval(), sample_kwargs=dict(zip(names, example_inputs)))
    data = model.model_content()
    applied = {fqn: "fp32" for fqn, m in wrapper.named_modules() if isinstance(m, nn.Linear)}
    if rule is not None:
        on_stage("quantize")
        label = "int8" if rule.scheme == "int8" else f"int4 g{rule.group_size}"
        narrow = {fqn for fqn, m in wrapper.named_modules()
                  if isinstance(m, nn.Linear) and rule.scheme == "int4" and m.in_features % rule.group_size}
        applied = {fqn: ("int8 (width not divisible by the int4 group)" if fqn in narrow else label)
                   for fqn in applied}
        data, _ = quantize_tflite(data, rule=rule)
    on_stage("serialize")
    Path(out_path).write_bytes(data)
    return applied


def export_component(component: str, module: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_path: Path, *,
                     rules: tuple[Rule, ...], on_stage=lambda stage: None) -> tuple[dict[str, str], None]:
    """Write `out_path` from `module` (a copy) under `rules` (resolved for the target). Returns (Linear fqn ->
    scheme applied, None: LiteRT reports no delegation fraction at export time). An fp16 rule leaves the file
    fp32: the runtime computes in fp16 where the target asks for it."""
    applied = export_tflite(wrap(component, module), example_inputs, out_path, rules=rules, on_stage=on_stage)
    if any(r.scheme == "fp16" for r in rules):
        applied = {"*": "fp16"}
    return applied, None


def runtime_version() -> str:
    from importlib.metadata import version

    return f"ai-edge-litert {version('ai-edge-litert')} (litert-torch {version('litert-torch')})"
