"""Can the stateful decoder artifact take a shorter last window? (issue 14: decoded frames <= needed + receptive field)

    .venv/bin/python -m benchmarks.speed.dynamic_window                          # random:tiny, window 8
    .venv/bin/python -m benchmarks.speed.dynamic_window --model random:sao-small --window 19 --time

A stream of W-frame windows pads its last window with zeros: 10 s of SAO-small decode 12 x 19 = 228 latent frames,
where the stream needs 225 (the audio's frames plus the decoder's delay) and issue 14 allows 226. A decoder artifact whose window dimension is dynamic
(1..W) could decode only what is left. The StatefulDecoder itself takes any window (its states do not depend on W);
this exports it with `torch.export.Dim` on the latents' time axis, for each backend, beside the static export
edgegen writes, and reports what the converter makes of it: for ExecuTorch the XNNPACK delegation (delegates, ops
left to portable kernels) and the outputs against eager for a full, a half and a one-frame window (with `--time`,
the median of 3 calls of each); for LiteRT whether litert-torch converts it at all.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def executorch_case(module, example, window: int, dynamic: bool, tmp: Path, timed: bool) -> dict:
    from executorch.exir import to_edge_transform_and_lower

    from edgegen.export.executorch import _count_ops, _forget_written_program, partitioners, program_plan
    from edgegen.runtime import _executorch_bindings

    shapes = ({2: torch.export.Dim("frames", min=1, max=window)}, None, None) if dynamic else None
    with torch.no_grad():
        ep = torch.export.export(module, example, dynamic_shapes=shapes, strict=False)
    edge = to_edge_transform_and_lower(ep, partitioner=partitioners("float-first"))
    gm = edge.exported_program().graph_module
    delegated, total, left = _count_ops(gm)
    path = tmp / f"decoder-{'dynamic' if dynamic else 'static'}.pte"
    path.write_bytes(edge.to_executorch().buffer)
    out = {"delegates": program_plan(path)[0], "ops_delegated": delegated, "ops": total, "left_to_portable": left}
    del edge, ep
    _forget_written_program()
    program = _executorch_bindings()._load_program(str(path))
    method = program.load_method("forward")
    latents, position, state = example
    for n in sorted({window, max(window // 2, 1), 1}, reverse=True) if dynamic else [window]:
        x = latents[:, :, :n].contiguous()
        with torch.no_grad():
            ref = module(x, position, state)
        got = method([x, position, state])
        case = {"max_abs_diff": [float((a - b).abs().max()) for a, b in zip(got, ref)],
                "audio_samples": int(got[0].shape[-1])}
        if timed:
            times = []
            for _ in range(4):
                t0 = time.perf_counter()
                method([x, position, state])
                times.append(time.perf_counter() - t0)
            case["call_s"] = statistics.median(times[1:])
        out[f"window {n}"] = case
    return out


def litert_case(module, example, window: int, tmp: Path) -> dict:
    import litert_torch

    names = list(inspect.signature(module.forward).parameters)
    shapes = {names[0]: {2: torch.export.Dim("frames", min=1, max=window)}, names[1]: None, names[2]: None}
    try:
        with torch.no_grad():
            model = litert_torch.convert(module, sample_kwargs=dict(zip(names, example)), dynamic_shapes=shapes,
                                         lightweight_conversion=True)
        model.export(str(tmp / "decoder-dynamic.tflite"))
        return {"converted": True}
    except Exception as exc:  # what the converter says is the finding
        text = str(exc).strip().splitlines()
        return {"converted": False, "error": f"{type(exc).__name__}: {text[0] if text else ''}"[:300],
                "while": next((ln.strip() for ln in text if ln.strip().startswith("While executing")), None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--backends", default="executorch,litert")
    ap.add_argument("--time", action="store_true", help="ExecuTorch: time each window (median of 3 calls)")
    args = ap.parse_args()
    backends = args.backends.split(",")
    if args.window < 1:
        ap.error("--window must be at least 1 latent frame")
    if not set(backends) <= {"executorch", "litert"}:
        ap.error(f"--backends: unknown {sorted(set(backends) - {'executorch', 'litert'})} (executorch, litert)")

    import edgegen
    from edgegen.components.stateful_decoder import StatefulDecoder
    from edgegen.export.litert import decoder_gemm_layers
    from edgegen.export.wrappers import wrap
    from edgegen.recipes import load_recipe, load_target

    from edgegen.errors import EdgegenError

    torch.set_num_threads(2)
    try:
        pipe = edgegen.load_pipeline(args.model)
    except EdgegenError as exc:
        sys.exit(f"error: {exc}")
    decoder = pipe.decoder
    channels = decoder.config.latent_dim
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == "executorch":
                sd = StatefulDecoder(decoder, window=args.window, layout="nc1l")
            else:
                rules = load_recipe("fp32").resolved_rules("decoder", load_target("host-litert"))
                sd = StatefulDecoder(decoder, window=args.window, gemm_layers=decoder_gemm_layers(decoder, rules))
            module = wrap("decoder", sd.eval()).eval()
            example = (torch.randn(1, channels, args.window), torch.tensor([0.0, 4.0 * args.window]),
                       torch.zeros(1, sd.state_size))
            if backend == "executorch":
                for dynamic in (False, True):
                    r = executorch_case(module, example, args.window, dynamic, Path(tmp), args.time)
                    print(f"executorch, {'dynamic 1..' if dynamic else 'static '}{args.window}: {r}", flush=True)
            else:
                print(f"litert, dynamic 1..{args.window}: {litert_case(module, example, args.window, Path(tmp))}",
                      flush=True)


if __name__ == "__main__":
    main()
