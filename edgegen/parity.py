"""Parity of a bundle against the PyTorch reference it came from, stage by stage, on representative inputs.

    report = check_parity(BundlePipeline.open(path), load_pipeline(model))
    report["passed"], report["components"]["dit"]["metrics"]["sqnr_db"]

Inputs are captured from the reference pipeline, never random: real prompts through the tokenizer (one
short, one empty, one over-long); the DiT at each of the 8 schedule points along a real trajectory; the
decoder on the latents the reference sampler produced; and the whole chain end to end from the same
injected noise. Gates: an fp32 component within 1e-4 relative error; a quantized or fp16 one at or above
its recipe's SQNR floor (dB). End to end is gated (1e-3 relative) only when every component is fp32:
quantization error compounds over 8 steps into a different but plausible sample.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from edgegen.bundle_pipeline import BundlePipeline
from edgegen.metrics import Metrics, compare, mrstft_distance
from edgegen.noise import gaussian_noise
from edgegen.recipes import FP32_REL_TOL

REPORT_SCHEMA = "edgegen.parity/1"
E2E_REL_TOL = 1e-3
PROMPTS = ("warm lo-fi piano loop with soft drums, 90 BPM", "",
           "an epic orchestral cinematic track with choir, strings, brass and thundering taiko drums " * 6)


def gate_for(manifest: dict, component: str) -> dict:
    """{"metric": "rel_err", "threshold": 1e-4} for fp32 components, else the recipe's SQNR floor."""
    comp = manifest["recipe"]["components"][component]
    fp16_ok = manifest["target"].get("fp16_compute", False)
    schemes = {(r["fallback"] or "fp32") if (r["scheme"] == "fp16" and not fp16_ok) else r["scheme"]
               for r in comp["rules"]}
    if schemes == {"fp32"}:
        return {"metric": "rel_err", "threshold": FP32_REL_TOL}
    return {"metric": "sqnr_db", "threshold": float(comp["sqnr_floor_db"])}


def worst_case(items: list[Metrics]) -> Metrics:
    """The worst of each metric over `items` (what a stage is gated on)."""
    return Metrics(sqnr_db=min(m.sqnr_db for m in items), rel_err=max(m.rel_err for m in items),
                   max_abs=max(m.max_abs for m in items), cosine=min(m.cosine for m in items))


def _passes(m: Metrics, gate: dict) -> bool:
    return m.rel_err <= gate["threshold"] if gate["metric"] == "rel_err" else m.sqnr_db >= gate["threshold"]


def gated_entry(gate: dict, cases: list[dict], worst: Metrics, **extra) -> dict:
    """One component's report entry (shared with the on-device parity in adb.py)."""
    return {"gate": gate, "passed": _passes(worst, gate), "metrics": worst.to_json(), "cases": cases, **extra}


@torch.no_grad()
def check_parity(bp: BundlePipeline, pipe, *, seed: int = 0, seconds: float | None = None,
                 prompts: tuple[str, ...] = PROMPTS) -> dict:
    m = bp.bundle.manifest
    seconds = min(seconds or 10.0, pipe.max_seconds, bp.max_seconds)
    comps: dict[str, dict] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-long prompt is truncated on purpose
        ids_b, mask_b = bp.tokenizer.encode(list(prompts))
        ids_r, mask_r = pipe.tokenize(list(prompts))
    tokens_match = bool(np.array_equal(ids_b, ids_r.numpy()) and np.array_equal(mask_b, mask_r.numpy()))

    # text encoder: each prompt through both
    secs = torch.tensor([seconds], dtype=torch.float32)
    cases, metrics = [], []
    for i, prompt in enumerate(prompts):
        ref = pipe.text_encoder(ids_r[i:i + 1], mask_r[i:i + 1], secs)
        got = bp.artifacts["text_encoder"](token_ids=ids_r[i:i + 1], attention_mask=mask_r[i:i + 1], seconds_total=secs)
        for name, r, g in zip(("cross_attn_cond", "global_cond"), ref, got):
            mt = compare(r, g)
            metrics.append(mt)
            cases.append({"prompt": prompt[:60], "output": name, **mt.to_json()})
    comps["text_encoder"] = gated_entry(gate_for(m, "text_encoder"), cases, worst_case(metrics))

    # DiT: the reference trajectory's (x_i, t_i), same conditioning for both
    cross, glob = pipe.text_encoder(ids_r[:1], mask_r[:1], secs)
    steps = bp.steps
    noise = gaussian_noise(seed, (steps, *bp.latent_shape))
    trajectory: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording_velocity(x, t):
        trajectory.append((x.clone(), t.clone()))
        return pipe.dit(x, t, cross, glob)

    from edgegen.sampler import pingpong

    latents = pingpong(recording_velocity, torch.from_numpy(noise), bp.schedule())
    cases, metrics = [], []
    for x, t in trajectory:
        mt = compare(pipe.dit(x, t, cross, glob), bp.velocity(x, t, cross, glob))
        metrics.append(mt)
        cases.append({"t": round(float(t[0]), 6), **mt.to_json()})
    comps["dit"] = gated_entry(gate_for(m, "dit"), cases, worst_case(metrics))

    # decoder on the reference sampler's latents
    ref_audio, got_audio = pipe.decoder(latents), bp.decode(latents)
    mt = compare(ref_audio, got_audio)
    comps["decoder"] = gated_entry(gate_for(m, "decoder"), [mt.to_json()], mt,
                              mrstft=mrstft_distance(ref_audio[0].numpy(), got_audio[0].numpy()),
                              streamed=bp.stream)  # windows stitched vs the reference's whole-sequence decode

    # end to end from the same injected noise
    ref_wav = pipe.generate(prompts[0], seconds_total=seconds, noise=noise)
    got_wav = bp.generate(prompts[0], seconds_total=seconds, noise=noise)
    e2e = compare(ref_wav, got_wav)
    all_fp32 = all(c["gate"]["metric"] == "rel_err" for c in comps.values())
    end_to_end = {"gated": all_fp32, "threshold_rel_err": E2E_REL_TOL if all_fp32 else None,
                  "passed": (e2e.rel_err <= E2E_REL_TOL) if all_fp32 else True, "metrics": e2e.to_json(),
                  "mrstft": mrstft_distance(ref_wav, got_wav), "seconds": seconds, "seed": seed}
    passed = tokens_match and all(c["passed"] for c in comps.values()) and end_to_end["passed"]
    return {"schema": REPORT_SCHEMA, "bundle": str(bp.bundle.root), "backend": m["backend"],
            "recipe": m["recipe"]["name"], "target": m["target"]["name"], "model": pipe.source.model,
            "tokens_match": tokens_match, "passed": passed, "components": comps, "end_to_end": end_to_end}


def format_report(report: dict) -> str:
    def num(v, fmt):
        return v if isinstance(v, str) else format(v, fmt)

    lines = [f"parity  {report['bundle']}  ({report['backend']}, recipe {report['recipe']}) vs {report['model']}",
             f"{'stage':<14}{'SQNR dB':>9}{'rel err':>11}{'max abs':>11}{'cosine':>10}  {'gate':<18}result"]
    rows = list(report["components"].items()) + [("end_to_end", report["end_to_end"])]
    for name, c in rows:
        mt = c["metrics"]
        if name == "end_to_end":
            gate = f"rel <= {E2E_REL_TOL:g}" if c["gated"] else "report only"
        else:
            g = c["gate"]
            gate = f"rel <= {g['threshold']:g}" if g["metric"] == "rel_err" else f"SQNR >= {g['threshold']:g} dB"
        lines.append(f"{name:<14}{num(mt['sqnr_db'], '9.1f'):>9}{num(mt['rel_err'], '11.2e'):>11}"
                     f"{num(mt['max_abs'], '11.2e'):>11}{num(mt['cosine'], '10.6f'):>10}  {gate:<18}"
                     f"{'PASS' if c['passed'] else 'FAIL'}")
    if not report["tokens_match"]:
        lines.append("tokenizer     the bundle's tokenizer gives different ids than the model's: FAIL")
    lines.append(f"overall: {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)
