"""Arm's recipe, built with Arm's conversion calls and timed as bare runtime calls (issue 14, item 4).

    .venv/bin/python -m benchmarks.speed.arm_recipe --out out/arm-litert            # export once (cached), then time
    .venv/bin/python -m benchmarks.speed.arm_recipe --out out/arm-litert --json     # last stdout line: one JSON object

What Arm's `kleidiai-examples/audiogen/scripts/export_sao.py` does (litert-torch; see
../shared/reference/edge-deployment.md, sections 1.2-1.5), applied to the same weights edgegen exports:
  conditioners  `litert_torch.convert(module, sample_args=...)`, no quantization (T5 fp32; here sample_kwargs, which
                only names the signature's inputs)
  dit           `litert_torch.convert(dit, sample_kwargs=..., quant_config=QuantConfig(generative_recipe=
                GenerativeQuantRecipe(default=create_layer_quant_dynamic())))`: int8 channelwise dynamic range
  decoder       `litert_torch.convert(decoder, (latents [1, 64, 256],))`: the WHOLE sequence, fp32
Arm's app runs the decoder with XNNPACK FORCE_FP16, which an x86 host without fp16 arithmetic does not honour, so
it runs fp32 here as everywhere on this host. The modules are edgegen's reference modules, which match
stable-audio-tools numerically (tests/test_upstream_parity.py), wrapped with the bundle's I/O; Arm's wrappers
differ in I/O details (int64 token ids, planar [2, N] audio), not in the work the runtime does. What differs from
edgegen's bundles is the recipe: litert-torch's own quantizer for the DiT and one whole-sequence decoder call.

Timing, as Arm's app and `benchmarks/speed/decoder_stateful.py` do: load the three models in ai_edge_litert's
Interpreter (XNNPACK, --threads), then per generation: the conditioners once, `steps` DiT calls with the ping-pong
update in numpy between them, one decoder call; medians of --iters after one warm-up. Peak RSS is this process's,
which never holds the torch model: an export runs in a child process (`--export-only`) and the timing needs only
the three files, the tokenizer copied beside them and the lengths in `source.json`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def export(pipe, out: Path, log=print) -> dict[str, Path]:
    import litert_torch
    from litert_torch.generative.quantize import quant_recipe, quant_recipe_utils
    from litert_torch.quantize import quant_config

    from edgegen.export.wrappers import DecoderExport, DiTExport, TextEncoderExport, example_inputs

    out.mkdir(parents=True, exist_ok=True)
    paths = artifact_paths(out)
    source = {"model": pipe.source.model, "checkpoint_sha256": pipe.source.checkpoint_sha256}  # = source_of(model)
    if exported(out, source):
        return paths
    with torch.no_grad():
        log("arm recipe: conditioners (fp32)")
        te = example_inputs(pipe, "text_encoder")
        # Arm passes sample_args; keyword samples only name the signature's inputs (token_ids, ...), same graph
        litert_torch.convert(TextEncoderExport(pipe.text_encoder).eval(), sample_kwargs=dict(zip(
            ("token_ids", "attention_mask", "seconds_total"), te))).export(str(paths["text_encoder"]))
        log("arm recipe: dit (litert-torch dynamic int8, channelwise)")
        x, t, cross, glob = example_inputs(pipe, "dit")
        qc = quant_config.QuantConfig(generative_recipe=quant_recipe.GenerativeQuantRecipe(
            default=quant_recipe_utils.create_layer_quant_dynamic()))
        litert_torch.convert(DiTExport(pipe.dit).eval(), sample_kwargs={"x": x, "t": t, "cross_attn_cond": cross,
                                                                         "global_cond": glob},
                             quant_config=qc).export(str(paths["dit"]))
        log("arm recipe: decoder (whole sequence, fp32)")
        (latents,) = example_inputs(pipe, "decoder")
        litert_torch.convert(DecoderExport(pipe.decoder).eval(), sample_kwargs={"latents": latents}).export(
            str(paths["decoder"]))
    import shutil

    shutil.copyfile(pipe.tokenizer.path, out / "spiece.model")
    (out / "source.json").write_text(json.dumps({**source, "max_length": pipe.tokenizer.max_length,
                                                 "latent_length": pipe.latent_length}))
    return paths


def artifact_paths(out: Path) -> dict[str, Path]:
    return {c: out / f"{c}.tflite" for c in ("text_encoder", "dit", "decoder")}


def source_of(model: str) -> dict:
    """The weights' identity without loading them: a random model's id, else the checkpoint file's sha256."""
    from edgegen.common import sha256_file
    from edgegen.checkpoint import model_weights_file
    from edgegen.presets import random_checkpoint_id

    if model.startswith("random:"):
        return {"model": model, "checkpoint_sha256": random_checkpoint_id()}
    folder = Path(model).resolve()
    return {"model": str(folder), "checkpoint_sha256": sha256_file(model_weights_file(folder))}


def exported(out: Path, source: dict) -> dict | None:
    """The stamp of a finished export of these weights in `out` (None: export again)."""
    stamp = out / "source.json"
    files = [*artifact_paths(out).values(), out / "spiece.model"]
    if not (stamp.is_file() and all(f.is_file() for f in files)):
        return None
    info = json.loads(stamp.read_text())
    return info if {k: info.get(k) for k in source} == source else None


def _runner(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    run = interp.get_signature_runner()
    return lambda **kw: list(run(**kw).values())


def load_generation(paths: dict[str, Path], info: dict, *, threads: int, steps: int = 8):
    """Load the three models; returns (load seconds, generate), where generate() runs one 10 s generation as Arm's
    app does and returns its stage times in seconds (text_encoder, dit, dit_step = median step, decoder, e2e)."""
    from edgegen.sampler import make_noise, schedule
    from edgegen.tokenizer import Tokenizer

    tokenizer = Tokenizer(paths["decoder"].with_name("spiece.model"), max_length=info["max_length"])

    start = time.perf_counter()
    te, dit, dec = (_runner(paths[c], threads) for c in ("text_encoder", "dit", "decoder"))
    load_s = time.perf_counter() - start
    ids, mask = tokenizer.encode(["warm lo-fi piano loop with soft drums"])
    ts = schedule(steps)
    noise = make_noise(seed=0, steps=steps, channels=64, length=info["latent_length"]).numpy()

    def generate() -> dict:
        t0 = time.perf_counter()
        cross, glob = te(token_ids=ids.astype(np.int32), attention_mask=mask.astype(np.int32),
                         seconds_total=np.array([10.0], np.float32))
        t1 = time.perf_counter()
        x, step_s = noise[0][None], []
        for k in range(steps):
            s0 = time.perf_counter()
            v = dit(x=x, t=np.array([ts[k]], np.float32), cross_attn_cond=cross, global_cond=glob)[0]
            step_s.append(time.perf_counter() - s0)
            denoised = x - np.float32(ts[k]) * v
            x = denoised if k + 1 == steps else (1 - ts[k + 1]) * denoised + ts[k + 1] * noise[k + 1][None]
        t2 = time.perf_counter()
        audio = dec(latents=x.astype(np.float32))[0]
        t3 = time.perf_counter()
        assert np.isfinite(audio).all()
        return {"text_encoder": t1 - t0, "dit": t2 - t1, "dit_step": statistics.median(step_s),
                "decoder": t3 - t2, "e2e": t3 - t0}

    return load_s, generate


def time_generation(paths: dict[str, Path], info: dict, *, threads: int, iters: int, steps: int = 8) -> dict:
    load_s, generate = load_generation(paths, info, threads=threads, steps=steps)
    runs = [generate() for _ in range(iters + 1)][1:]  # the first is the warm-up
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {"schema": "edgegen.arm-recipe/1", "backend": "litert", "recipe": "arm (T5 fp32, DiT int8 dynamic via "
            "litert-torch, decoder whole fp32)", "threads": threads, "iters": iters, "load_s": load_s,
            "stages": {"text_encoder": med["text_encoder"], "dit": med["dit"], "decoder": med["decoder"]},
            "dit_step_s": med["dit_step"], "e2e_s": med["e2e"], "e2e_runs_s": [r["e2e"] for r in runs],
            "decoded_latent_frames": info["latent_length"], "time_to_first_audio_s": med["e2e"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "size_mb": sum(p.stat().st_size for p in paths.values()) / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--out", type=Path, required=True, help="folder for the three .tflite files (reused)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line last")
    args = ap.parse_args()
    if args.iters < 1:
        ap.error("--iters must be at least 1")

    torch.set_num_threads(args.threads)
    paths = artifact_paths(args.out)
    if args.export_only:
        import edgegen

        export(edgegen.load_pipeline(args.model), args.out, log=lambda s: print(s, file=sys.stderr, flush=True))
        return
    source = source_of(args.model)  # hashes a checkpoint file: once
    info = exported(args.out, source)
    if info is None:  # export in a child, so this process's peak RSS is the runtime's, not the torch model's
        subprocess.run([sys.executable, "-m", "benchmarks.speed.arm_recipe", "--model", args.model,
                        "--out", str(args.out), "--threads", str(args.threads), "--export-only"], check=True)
        info = exported(args.out, source)
    r = time_generation(paths, info, threads=args.threads, iters=args.iters)
    st = r["stages"]
    print(f"arm recipe (litert, bare calls, {args.threads} threads, median of {args.iters}): text encoder "
          f"{st['text_encoder']:.3f} s, dit {st['dit']:.2f} s ({r['dit_step_s']:.3f} s/step), decoder "
          f"{st['decoder']:.2f} s, end to end {r['e2e_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB",
          file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
