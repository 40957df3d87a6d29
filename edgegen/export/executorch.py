"""ExecuTorch backend: torchao dynamic quantization, XNNPACK lowering, `.pte` serialisation.

    schemes, delegated = export_component("dit", module, example_inputs, out_path, rules=rules, on_stage=print)

`export_component` is the entry point `edgegen.export` calls (the LiteRT backend has the same one): it takes a
copy of the component's module and does everything ExecuTorch-specific to it: quantize the layers each rule
selects, switch to the XNNPACK-delegable export forms (the decoder's 2-D convolutions), the fp16 cast, lowering,
and the check that the graph was delegated at all.

Linears (text encoder, DiT): int8 is torchao's `Int8DynamicActivationIntxWeightConfig(weight_dtype=int8,
PerAxis(0))` (8da8w); int4 the same with `int4, PerGroup(g)` (8da4w). Decoder convolutions (2-D, see
oobleck.Decoder2D): int8 is XNNPACK's own dynamic quantization through PT2E (`XNNPACKQuantizer`, symmetric int8
weights per output channel, int8 activations chosen per call), one layer at a time by module name. fp16: the
module is cast to half (fp32 I/O via the wrapper). Lowering: see `partitioners`.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from edgegen.errors import EdgegenError
from edgegen.export.wrappers import to_half, wrap
from edgegen.recipes import Rule


@dataclass(frozen=True)
class LoweringStats:
    delegated_ops: int
    total_ops: int
    non_delegated: dict[str, int]

    @property
    def fraction(self) -> float:
        return self.delegated_ops / self.total_ops if self.total_ops else 0.0


def program_plan(path: Path) -> tuple[int, int]:
    """(XNNPACK delegate calls, planned activation bytes) of a written .pte's forward method: what the partitioner
    order decides (`partitioners`), read back from the file."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(path.read_bytes())
    plan = getattr(program, "program", program).execution_plan[0]
    calls = sum(type(i.instr_args).__name__ == "DelegateCall" for i in plan.chains[0].instructions)
    return calls, sum(plan.non_const_buffer_sizes)


def _torchao_config(rule: Rule):
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    if rule.scheme == "int8":
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))
    return Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(rule.group_size))


def quantize_executorch(module: nn.Module, rule_for, sources: dict[str, str] | None = None) -> dict[str, str]:
    """Quantize `module`'s Linears in place; `rule_for(name) -> Rule | None`. Returns name -> scheme applied.

    `sources` maps a Linear's path to the reference layer's name the rules match (a decoder's GEMM form: each
    convolution became one Linear, `oobleck.gemm_sources`); without it a Linear's own path is its name.
    A Linear whose input width the int4 group size does not divide takes int8 per-channel instead
    (e.g. the seconds embedder's 257-wide input), reported as such.
    """
    from torchao.quantization import quantize_

    plan: dict[str, Rule] = {}
    applied: dict[str, str] = {}
    for fqn, m in module.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        name = sources.get(fqn, fqn) if sources else fqn
        rule = rule_for(name)
        scheme = rule.scheme if rule else "fp32"
        if scheme == "int4" and m.in_features % rule.group_size:
            rule, scheme = Rule(rule.pattern, "int8"), "int8 (width not divisible by the int4 group)"
        if rule is not None and rule.scheme in ("int8", "int4"):
            plan[fqn] = rule
        applied[name] = f"int4 g{rule.group_size}" if scheme == "int4" else scheme
    for key in sorted({(r.scheme, r.group_size) for r in plan.values()}):
        chosen = {fqn for fqn, r in plan.items() if (r.scheme, r.group_size) == key}
        cfg = _torchao_config(next(r for r in plan.values() if (r.scheme, r.group_size) == key))
        quantize_(module, cfg, filter_fn=lambda m, fqn, chosen=chosen: isinstance(m, nn.Linear) and fqn in chosen)
    return applied


def conv_quantizer(module: nn.Module, rule_for, prefix: str = ""):
    """(XNNPACKQuantizer or None, reference name -> scheme) for the convolutions of a decoder in its 2-D form
    (a Decoder2D or a StatefulDecoder in the "nc1l" layout): each convolution whose rule says int8 is quantized
    dynamically, by its module path under `prefix` (the export wrapper's attribute)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)

    chosen, applied = set(), {}
    for path, name in module.conv_sources().items():
        rule = rule_for(name)
        scheme = rule.scheme if rule else "fp32"
        if scheme not in ("fp32", "int8"):
            raise EdgegenError(f"decoder layer {name}: ExecuTorch quantizes convolutions as int8 only (got {scheme}); "
                               "use int8 or fp32 for decoder layers, or the litert target")
        if scheme == "int8":
            chosen.add(prefix + path)
        applied[name] = scheme
    if not chosen:
        return None, applied

    def in_chosen_layer(node) -> bool:
        # set_module_name would test a convolution's weight and bias nodes too, which carry no module stack and
        # so never match: decide on the convolution's own stack, and let those through
        stack = node.meta.get("nn_module_stack")
        return not stack or any(path in chosen for path, _ in stack.values())

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    return quantizer.set_filter_function(in_chosen_layer), applied


def _count_ops(graph_module) -> tuple[int, int, dict[str, int]]:
    """(delegated ops, ops left on the portable CPU kernels, name -> count of the latter)."""
    from executorch.exir.lowered_backend_module import get_lowered_submodules

    delegated = 0
    for _, lowered, _ in get_lowered_submodules(graph_module):
        gm = lowered.original_module.graph_module
        delegated += sum(1 for n in gm.graph.nodes if n.op == "call_function")
    left: dict[str, int] = {}
    skip = ("executorch_call_delegate", "getitem", "alloc", "sym_size")
    for n in graph_module.graph.nodes:
        if n.op == "call_function" and not any(s in str(n.target) for s in skip):
            name = str(getattr(n.target, "__name__", n.target))
            left[name] = left.get(name, 0) + 1
    return delegated, delegated + sum(left.values()), left


# How XNNPACK's partitioners share a program out (`partitioners`). The benchmarks set these to compare layouts:
# benchmarks/speed/decoder_stateful.py --et-partition, benchmarks/speed/et_linear_partition.py.
DECODER_PARTITION = "float-first"  # a convolution-form decoder
SHARED_PROVENANCE = True  # `shared_provenance`; benchmarks/speed/export_provenance.py sets it False to compare
LINEAR_PARTITION = "joint"  # everything else: the text encoder, the DiT, an fp16 or GEMM-form decoder


def partitioners(layout: str) -> list:
    """XNNPACK's partitioners for `layout`, in the order they claim nodes.

    - "joint": one partitioner for float and dynamically quantized ops together, so torchao's int8 Linears and the
      float ops between them share delegates. Split over two partitioners, the dynamically quantized one (which
      claims one op at a time) cut the tiny int8 DiT into 76 delegates; XNNPACK's passes run once per delegate, so
      its export took twice as long (benchmarks/speed/et_linear_partition.py).
    - "float-first" (a convolution-form decoder): the float partitioner first, so the float layers share delegates
      (an fp32 decoder is one: 2.2 MB of planned arena instead of 275.5 MB, 10% faster), then the dynamically
      quantized one for the int8 convolutions. One partition holding int8 convolutions too fails in XNNPACK when
      the program runs ("Propagating input shapes failed"), so an int8 convolution stays a delegate of its own.
    - "per-op": the dynamically quantized partitioner first, then the float one: every component's order before
      2026-12-05, kept for the benchmarks' comparisons."""
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackDynamicallyQuantizedPartitioner, XnnpackPartitioner)

    if layout == "joint":
        return [XnnpackPartitioner(config_precisions=[ConfigPrecisionType.DYNAMIC_QUANT, ConfigPrecisionType.FP32])]
    if layout == "float-first":
        return [XnnpackPartitioner(config_precisions=ConfigPrecisionType.FP32), XnnpackDynamicallyQuantizedPartitioner()]
    if layout == "per-op":
        return [XnnpackDynamicallyQuantizedPartitioner(), XnnpackPartitioner()]
    raise ValueError(f"unknown partition layout {layout!r}")


@contextmanager
def shared_provenance(enabled: bool = True):
    """Within the block, a node a pass re-creates shares its source's provenance records instead of deep-copying
    them. torch.fx records where each node came from (`meta["from_node"]`, a chain of NodeSource records that grows
    by one with every pass); each re-created node deep-copies its source's whole chain. Through ExecuTorch's
    lowering (a few dozen passes, and XNNPACK's pass pipeline once per delegate) that copying was a quarter of the
    time. The records are only read afterwards, so sharing them changes nothing written: the .pte files are
    byte-identical either way (tests/test_export.py, benchmarks/speed/export_provenance.py)."""
    from torch.fx import traceback as fx_traceback

    if not enabled or getattr(fx_traceback, "copy", None) is not copy:  # another torch: leave it be
        yield
        return
    saved = fx_traceback.copy  # the module NodeSource calls deepcopy through (torch 2.13: its only other use is copy)
    fx_traceback.copy = SimpleNamespace(deepcopy=list, copy=copy.copy)
    try:
        yield
    finally:
        fx_traceback.copy = saved


def export_pte(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_path: Path, *,
               on_stage=lambda stage: None, quantizer=None, partition: str = "joint") -> LoweringStats:
    """Trace, lower and write `module`; with a PT2E `quantizer`, quantize the traced graph first (its dynamic
    quantization needs no calibration: one call on the example inputs runs the observers). `partition`: how XNNPACK's
    partitioners share it out (`partitioners`)."""
    with shared_provenance(SHARED_PROVENANCE):
        return _export_pte(module, example_inputs, out_path, on_stage=on_stage, quantizer=quantizer,
                           partition=partition)


def _export_pte(module, example_inputs, out_path, *, on_stage, quantizer, partition) -> LoweringStats:
    from executorch.exir import to_edge_transform_and_lower

    on_stage("trace")
    with torch.no_grad():
        ep = torch.export.export(module, example_inputs, strict=False)
        if quantizer is not None:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            on_stage("quantize")
            prepared = prepare_pt2e(ep.module(), quantizer)
            prepared(*example_inputs)
            ep = torch.export.export(convert_pt2e(prepared), example_inputs, strict=False)
    on_stage("lower")
    edge = to_edge_transform_and_lower(ep, partitioner=partitioners(partition))
    delegated, total, left = _count_ops(edge.exported_program().graph_module)
    on_stage("serialize")
    program = edge.to_executorch()
    with open(out_path, "wb") as f:
        program.write_to_file(f)
    _forget_written_program()
    return LoweringStats(delegated_ops=delegated, total_ops=total, non_delegated=left)


def _forget_written_program() -> None:
    """What keeps a written program alive after `export_pte`: XNNPACK's partitioner config modules each hold a
    module-level `WhyNoPartition` with the last node they refused, ExecuTorch's unbounded lru caches (e.g.
    `exir.backend.utils.is_same_node`) are keyed by graph nodes, and torch's fake-tensor cache by the lowered
    modules. Through any of them the program's graph, constants and delegate blobs stay resident (~1.6 GB after the
    full-size DiT, benchmarks/memory/export_memory.py). Drop all three once a program is written.

    A cached function without arguments holds a constant, not a program: XNNPACK's SDPA and bilinear-upsample
    pattern graphs (built by tracing, ~10 s on 2 cores) and the serializer's schema set-up. Those are kept, so the
    next export does not rebuild them."""
    import sys

    from torch._subclasses.fake_tensor import FakeTensorMode

    for name, module in list(sys.modules.items()):
        if not name.startswith("executorch.") or module is None:
            continue
        for value in list(vars(module).values()):
            if type(value).__name__ == "WhyNoPartition" and hasattr(value, "node"):
                value.node = None
            elif (callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name
                  and _takes_arguments(value)):
                value.cache_clear()
    if hasattr(FakeTensorMode, "cache_clear"):
        FakeTensorMode.cache_clear()


def _takes_arguments(function) -> bool:
    """Whether a cached function's results can depend on what it is called with (a program's nodes, say)."""
    try:
        return bool(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return True  # unknown: clear it


def export_component(component: str, module: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_path: Path, *,
                     rules: tuple[Rule, ...], on_stage=lambda stage: None) -> tuple[dict[str, str], float]:
    """Write `out_path` from `module` (a copy: it is modified), quantized by `rules` (resolved for the target,
    first match wins). Returns (layer name -> scheme applied, fraction of ops delegated to XNNPACK).
    A convolution-form decoder is lowered in DECODER_PARTITION's layout, everything else in LINEAR_PARTITION's.

    A decoder arrives as an OobleckDecoder (made a Decoder2D here) or as a StatefulDecoder in the "nc1l" layout
    (or "nlc", the GEMM form, which the benchmarks compare: its Linears take torchao's quantization)."""
    from edgegen.components.export_form import set_export_form

    from edgegen.components.oobleck import Decoder2D, OobleckDecoder, gemm_sources

    half = any(r.scheme == "fp16" for r in rules)
    on_stage("quantize")
    rule_for = lambda name: next((r for r in rules if r.matches(name)), None)  # noqa: E731
    quantizer, conv_form = None, False
    if component == "decoder":
        if isinstance(module, OobleckDecoder):
            module = Decoder2D(module).eval()
        if half:
            applied = {"*": "fp16"}
        elif getattr(module, "layout", None) == "nlc":
            applied = quantize_executorch(module, rule_for, gemm_sources(module))
        else:
            quantizer, applied = conv_quantizer(module, rule_for, prefix="decoder.")  # wrap()'s attribute
            conv_form = True  # the quantizer is None when no layer is int8
    else:
        applied = {"*": "fp16"} if half else quantize_executorch(module, rule_for)
        set_export_form(module)  # XNNPACK-delegable formulations of LayerNorm, attention, Snake
    if half:
        module = to_half(component, module)
    stats = export_pte(wrap(component, module, half=half), example_inputs, out_path, on_stage=on_stage,
                       quantizer=quantizer, partition=DECODER_PARTITION if conv_form else LINEAR_PARTITION)
    if stats.delegated_ops == 0:
        raise EdgegenError(f"{component}: nothing was delegated to XNNPACK ({stats.non_delegated}); the artifact "
                           "would run on slow portable kernels")
    return applied, stats.fraction


def runtime_version() -> str:
    from importlib.metadata import version

    return f"executorch {version('executorch')}"
