"""The decoder three ways, as bare runtime calls, for `--seconds` of audio (issue 14, item 1).

    .venv/bin/python -m benchmarks.speed.decoder_stateful --backends litert,executorch --windows 8,19,32 --out out/dec
    .venv/bin/python -m benchmarks.speed.decoder_stateful ... --export-only     # export (slow, any time), time later
    .venv/bin/python -m benchmarks.speed.decoder_stateful --backends executorch --windows 19 --kinds stateful \
        --recipe fast --et-partition per-op      # ExecuTorch's partitioner order before 2026-12-05 (comparison)

For each backend, the full-size `random:sao-small` decoder is exported (fp32, or --recipe's decoder rules; into
--out, reused) as
  whole       one call on the whole 256-frame sequence (Arm's recipe decodes this way)
  overlap     edgegen's schema-2 stream: windows of 60 frames overlapping by the receptive field (10)
  stateful W  the schema-3 stream: windows of W frames back to back, state carried between calls
and each is timed on the same latents: decoder seconds (median of --iters after one warm-up), latent frames
decoded, time to the first audio chunk (decoder only), and the stitched audio's SQNR against the whole call. For
ExecuTorch, `arena MB` is the program's planned activation memory (`non_const_buffer_sizes` read from the .pte): the
memory a call needs beside the weights, and `delegates` the XNNPACK delegates it was lowered into. `--et-partition
per-op` lowers with the dynamically quantized partitioner first, which made one delegate per convolution
(`edgegen.export.executorch.partitioners`).
The CPU's int8 features are printed first (compare only within one run). Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch

from edgegen.bench import describe_cpu, host_machine


def export(pipe, backend: str, stream: dict | None, out: Path, recipe: str = "fp32", float_first: bool = True):
    """(artifact path, its io spec, export seconds; 0 when an earlier export of the same weights was reused)."""
    from edgegen.components.stateful_decoder import StatefulDecoder
    from edgegen.export.wrappers import example_inputs, io_spec
    from edgegen.recipes import load_recipe, load_target

    target = load_target(f"host-{backend}")
    rules = load_recipe(recipe).resolved_rules("decoder", target)
    module = copy.deepcopy(pipe.decoder)
    if stream and stream.get("mode") == "stateful":
        module = StatefulDecoder(module, window=stream["window"], layout="nc1l" if backend == "executorch" else "ncl")
    if backend == "executorch":
        from edgegen.export import executorch as be
    else:
        from edgegen.export import litert as be
    path = out / f"decoder{'.pte' if backend == 'executorch' else '.tflite'}"
    spec = io_spec(pipe, "decoder", stream=stream)
    stamp = out / "source.json"
    source = {"model": pipe.source.model, "checkpoint_sha256": pipe.source.checkpoint_sha256, "spec": spec,
              "recipe": recipe, "float_first": float_first}
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == source:
        return path, spec, 0.0
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if backend == "executorch":
        be.DECODER_PARTITION = "float-first" if float_first else "per-op"
    be.export_component("decoder", module, example_inputs(pipe, "decoder", stream=stream), path, rules=rules)
    stamp.write_text(json.dumps(source))
    return path, spec, time.perf_counter() - start


def plan(path: Path) -> tuple[float | None, int | None]:
    """An ExecuTorch program's memory-planned (activation) buffers in MB and its XNNPACK delegate calls; (None,
    None) for other artifacts."""
    if path.suffix != ".pte":
        return None, None
    from edgegen.export.executorch import program_plan

    calls, planned = program_plan(path)
    return planned / 2**20, calls


def load(backend: str, path: Path, spec: dict, threads: int):
    from edgegen.runtime import Artifact, _executorch, _litert, _set_executorch_threads
    from edgegen.weight_cache import WeightCache

    if backend == "executorch":
        _set_executorch_threads(threads)
        call, _ = _executorch(path, spec, threads, "decoder", WeightCache.off())
    else:
        call, _ = _litert(path, spec, threads, "decoder", WeightCache.off())
    return Artifact(spec, call, load_s=0.0)


def decode(art, stream: dict | None, latents: torch.Tensor, samples: int):
    """(audio [1, 2, samples], frames decoded, seconds to the first chunk, total seconds)."""
    from edgegen.streaming import decode_stateful, decode_stream, frames_to_decode, plan_windows

    start = time.perf_counter()
    first = None
    chunks = []
    if stream is None:
        chunks.append(art(latents=latents)[0][:, :, :samples])
        frames = latents.shape[-1]
        it = iter(())
    elif stream.get("mode") == "stateful":
        w = stream["window"]
        it = decode_stateful(lambda x, p, s: tuple(art(latents=x, position=p, state=s)), latents, window=w,
                             hop=stream["hop"], delay=stream["delay"], state_size=stream["state_size"],
                             samples=samples)
        frames = None
    else:
        it = decode_stream(lambda x: art(latents=x)[0], latents, window=stream["window"], overlap=stream["overlap"],
                           hop=stream["hop"], samples=samples)
        n = frames_to_decode(samples, length=latents.shape[-1], window=stream["window"], overlap=stream["overlap"],
                             hop=stream["hop"])
        frames = sum(p.end - p.start for p in plan_windows(n, window=stream["window"], overlap=stream["overlap"]))
    for c in it:
        if first is None:
            first = time.perf_counter() - start
        chunks.append(c)
    total = time.perf_counter() - start
    if stream and stream.get("mode") == "stateful":
        from edgegen.streaming import stateful_calls

        frames = stream["window"] * stateful_calls(samples, window=stream["window"], hop=stream["hop"],
                                                   delay=stream["delay"])
    return torch.cat([torch.as_tensor(c) for c in chunks], -1), frames, (first if first is not None else total), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--backends", default="litert,executorch")
    ap.add_argument("--windows", default="8,19,32", help="stateful windows (latent frames per call)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("out/decoder_stateful"), help="exports go here (reused)")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--kinds", default="whole,overlap,stateful", help="which of the three decoders to run")
    ap.add_argument("--recipe", default="fp32", help="the decoder rules of this recipe (fp32, int8, fast, ...)")
    ap.add_argument("--et-partition", choices=("float-first", "per-op"), default="float-first",
                    help="ExecuTorch's partitioner order (per-op: before 2026-12-05, one delegate per convolution)")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if unknown := sorted(set(kinds) - {"whole", "overlap", "stateful"}):
        ap.error(f"--kinds {','.join(unknown)}: choose from whole, overlap, stateful")
    from edgegen.errors import EdgegenError
    from edgegen.recipes import load_recipe

    try:
        load_recipe(args.recipe)  # a bad name fails here, before the model loads
    except EdgegenError as exc:
        ap.error(f"--recipe: {exc}")

    import edgegen
    from edgegen.common import num_samples
    from edgegen.export import resolve_decoder_window

    torch.set_num_threads(args.threads)
    print(f"cpu: {describe_cpu(host_machine())}; threads {args.threads}; {args.seconds:g} s of audio", flush=True)
    pipe = edgegen.load_pipeline(args.model)
    samples = num_samples(args.seconds, pipe.sample_rate)
    latents = torch.randn(1, 64, pipe.latent_length, generator=torch.Generator().manual_seed(0))
    reference = None
    if not args.export_only:
        with torch.no_grad():
            reference = pipe.decoder(latents)[:, :, :samples]
    variants = [("whole", None)] if "whole" in kinds else []
    variants += [("overlap 60", resolve_decoder_window(pipe, 60, "overlap"))] if "overlap" in kinds else []
    if "stateful" in kinds:
        variants += [(f"stateful {w}", resolve_decoder_window(pipe, w)) for w in map(int, args.windows.split(","))]
    float_first = args.et_partition == "float-first"
    print(f"recipe {args.recipe}; ExecuTorch partitions {args.et_partition}", flush=True)
    print(f"{'backend':<11}{'decoder':<13}{'frames':>7}{'export s':>10}{'first s':>9}{'decode s':>10}"
          f"{'runs s':>22}{'SQNR dB':>9}{'arena MB':>10}{'delegates':>10}", flush=True)
    for backend in args.backends.split(","):
        for name, stream in variants:
            folder = name.replace(" ", "-") + ("" if args.recipe == "fp32" else f"-{args.recipe}")
            folder += "" if backend != "executorch" or float_first else "-per-op"
            path, spec, export_s = export(pipe, backend, stream, args.out / backend / folder, args.recipe,
                                          float_first)
            if args.export_only:
                print(f"{backend:<11}{name:<13}exported in {export_s:.0f} s: {path}", flush=True)
                continue
            mb, nd = plan(path)
            arena = "-" if mb is None else f"{mb:.1f}"
            art = load(backend, path, spec, args.threads)
            decode(art, stream, latents, samples)  # warm-up
            runs = [decode(art, stream, latents, samples) for _ in range(args.iters)]
            del art
            audio, frames = runs[0][0], runs[0][1]
            err = (audio - reference).pow(2).mean().item()
            sqnr = 10 * math.log10(reference.pow(2).mean().item() / max(err, 1e-30))
            med = lambda i: statistics.median(r[i] for r in runs)  # noqa: E731
            print(f"{backend:<11}{name:<13}{frames:>7}{export_s:>10.1f}{med(2):>9.3f}{med(3):>10.3f}"
                  f"{' '.join(f'{r[3]:.2f}' for r in runs):>22}{sqnr:>9.1f}{arena:>10}{'-' if nd is None else nd:>10}", flush=True)


if __name__ == "__main__":
    main()
