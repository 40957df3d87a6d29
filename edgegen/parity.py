"""Parity of a bundle against the PyTorch reference it came from, stage by stage, on representative inputs.

    report = check_parity(BundlePipeline.open(path), load_pipeline(model))
    report["passed"], report["components"]["dit"]["metrics"]["sqnr_db"]

Two halves, so every runtime gets the same report: a bundle's outputs at each stage are captured into
`StageOutputs` (`capture_bundle` here, from the Python runtime; `edgegen.adb` from the native runner's --dump
files on a phone), and `build_report(outputs, pipe, manifest)` runs the reference on the same inputs and gates.

Inputs are real, never random: real prompts through the bundle's tokenizer (one short, one empty, one over-long;
the ids must equal the reference tokenizer's); the DiT at each of the 8 schedule points along the bundle's own
trajectory from injected noise; the decoder on the latents that trajectory ended in; and the whole chain end to
end from the same noise. Gates: an fp32 component within 1e-4 relative error; a quantized or fp16 one at or above
its recipe's SQNR floor (dB). End to end is gated (1e-3 relative) only when every component is fp32: quantization
error compounds over 8 steps into a different but plausible sample. A stage whose bundle output holds NaN or inf
fails its gate (and end to end fails) with a `reason`; a reference that does so on finite inputs is bad input.

Audio-to-audio bundles (an `encoder` artifact) get two more rows: `encoder`, the init latents (the encoder's
mean + std x the VAE noise) on a representative init signal (`parity_init_audio`: tones with envelopes and a
little noise at the model's rate and length; no recording is shipped), gated like the other components; and
`audio_to_audio`, the first prompt generated from that init audio at S = `A2A_NOISE_LEVEL` with the same injected
noise, gated like end to end (1e-3 relative when every component is fp32, else reported).

Before any work, the bundle's manifest `source` must match the model's: a different config (another architecture
or latent length) is refused; a different checkpoint file with the same config is only warned about, since the
same weights saved as .ckpt or .safetensors hash differently and the gates measure exactly whether they agree.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgegen.common import check_seconds, num_samples, write_text_atomic
from edgegen.errors import EdgegenError
from edgegen.metrics import Metrics, compare, mrstft_distance
from edgegen.noise import gaussian_noise
from edgegen.recipes import FP32_REL_TOL
from edgegen.request import GenerateRequest
from edgegen.sampler import pingpong, schedule

REPORT_SCHEMA = "edgegen.parity/1"
E2E_REL_TOL = 1e-3
A2A_NOISE_LEVEL = 0.5
PROMPTS = ("warm lo-fi piano loop with soft drums, 90 BPM", "",
           "an epic orchestral cinematic track with choir, strings, brass and thundering taiko drums " * 6)
_NAN = Metrics(sqnr_db=math.nan, rel_err=math.nan, max_abs=math.nan, cosine=math.nan)


# --- what a bundle produced ---------------------------------------------------------------------------------------

@dataclass
class PromptOutputs:
    """One prompt through the bundle: its tokenizer's ids and mask [1, L], its text encoder's outputs on them."""
    prompt: str
    token_ids: np.ndarray
    attention_mask: np.ndarray
    cross_attn_cond: np.ndarray
    global_cond: np.ndarray


@dataclass
class DitStep:
    """The bundle's DiT on one step of its own trajectory: input x [1, 64, T] at level t, output velocity."""
    x: np.ndarray
    t: float
    velocity: np.ndarray


@dataclass
class EncoderOutputs:
    """Audio-to-audio through the bundle: the prepared init audio [1, 2, N] and VAE noise [1, 64, T] it was given,
    the init latents its encoder made from them [1, 64, T], and the first prompt's audio generated from them at
    noise level `level` with the chain's noise ([2, n])."""
    init_audio: np.ndarray
    vae_noise: np.ndarray
    init_latents: np.ndarray
    level: float
    audio: np.ndarray


def parity_init_audio(sample_rate: int, length: int) -> np.ndarray:
    """float32 [2, length]: a representative, deterministic init signal (a chord per channel, each note with its
    own attack and decay, plus a little noise; peak about 0.5)."""
    t = np.arange(length) / sample_rate
    rng = np.random.default_rng(20261130)
    out = []
    for notes in ((220.0, 277.2, 329.6), (246.9, 311.1, 370.0)):
        x = sum(np.sin(2 * np.pi * f * t + k) * np.exp(-((t * (k + 1)) % 1.5) * 2.0) for k, f in enumerate(notes))
        out.append(0.15 * x + 0.02 * rng.standard_normal(length))
    return np.stack(out).astype(np.float32)


@dataclass
class StageOutputs:
    """A bundle's output at every stage parity checks, captured wherever it ran. The first prompt's run is the
    chain: its conditioning drove the DiT from `noise`, `latents[-1]` went to the decoder, `audio` came out."""
    seconds: float
    seed: int
    noise: np.ndarray                         # [steps, 64, T], injected
    prompts: list[PromptOutputs]
    latents: list[np.ndarray]                 # x after each step [1, 64, T]
    audio: np.ndarray                         # [2, num_samples(seconds)]: end to end
    dit_steps: list[DitStep] | None = None    # each step's own input and output, where the runtime exposes them
    decoder_audio: np.ndarray | None = None   # the decoder on latents[-1], if not `audio` ([2, n'])
    decoder_info: dict = field(default_factory=dict)  # extra keys of the decoder's report entry
    encoder: EncoderOutputs | None = None     # audio-to-audio bundles only


# --- checks before any work ---------------------------------------------------------------------------------------

def check_source(manifest: dict, pipe) -> None:
    """Refuse (one line naming both) a bundle exported from another model config or latent shape than `pipe`'s;
    warn when only the checkpoint file differs (the same weights re-saved hash differently: the gates decide)."""
    src, here = manifest.get("source") or {}, pipe.source
    theirs = src.get("model", "an unknown model")
    inputs = manifest.get("artifacts", {}).get("dit", {}).get("inputs") or [{}]
    dit_x = next((i for i in inputs if i.get("name") == "x"), inputs[0]).get("shape")
    shape_b = tuple(dit_x[1:]) if dit_x else None
    shape_m = (pipe.config.dit.io_channels, pipe.latent_length)
    fmt = lambda s: "x".join(map(str, s))  # noqa: E731
    config_differs = src.get("config_sha256") not in (None, here.config_sha256)
    if config_differs or (shape_b and shape_b != shape_m) or manifest.get("sample_rate") not in (None, pipe.sample_rate):
        what = (f"config sha256 {str(src.get('config_sha256'))[:12]} vs {here.config_sha256[:12]}" if config_differs
                else f"latents {fmt(shape_b)} at {manifest.get('sample_rate')} Hz vs {fmt(shape_m)} at {pipe.sample_rate} Hz")
        raise EdgegenError(f"the bundle was exported from {theirs}, not from {here.model} ({what}); "
                           "run parity with the --model the bundle was exported from")
    if src.get("checkpoint_sha256") not in (None, here.checkpoint_sha256):
        warnings.warn(f"the bundle's checkpoint ({theirs}, sha256 {str(src['checkpoint_sha256'])[:12]}) is not the "
                      f"file {here.model} loads (sha256 {here.checkpoint_sha256[:12]}); comparing anyway: the same "
                      "config, and the same weights re-saved hash differently", UserWarning, stacklevel=2)


def parity_seconds(seconds: float | None, *, pipe, manifest: dict) -> float:
    """The clip length parity compares: the longest both make, or `seconds` when it is in range."""
    top = min(pipe.max_seconds, manifest["max_seconds"])
    if seconds is None:
        return top
    check_seconds(seconds, max_seconds=top, sample_rate=manifest["sample_rate"], owner="this bundle and model")
    return seconds


def check_report_path(path: Path, *, inputs: dict) -> None:
    """Before any work: the --json report can be written at `path` (and is none of the inputs)."""
    from edgegen.audio_io import check_output

    check_output(Path(path), inputs=inputs)


def write_report(path: Path, report: dict) -> None:
    """The report as JSON at `path`, atomically (never a half-written file)."""
    write_text_atomic(path, json.dumps(report, indent=2, allow_nan=False) + "\n")


# --- capture from the Python runtime ------------------------------------------------------------------------------

def _np(x) -> np.ndarray:
    return (x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).copy()


@torch.no_grad()
def capture_bundle(bp, *, prompts: tuple[str, ...], seconds: float, noise: np.ndarray, seed: int) -> StageOutputs:
    """Run `bp` (a BundlePipeline) stage by stage, keeping every output, NaN or not (the report judges them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-long prompt is truncated on purpose
        ids, mask = bp.tokenizer.encode(list(prompts))
    secs = np.array([seconds], np.float32)
    outs = []
    with bp.resident("text_encoder") as text_encoder:
        for i, prompt in enumerate(prompts):
            cross, glob = text_encoder(token_ids=ids[i:i + 1], attention_mask=mask[i:i + 1], seconds_total=secs)
            outs.append(PromptOutputs(prompt, ids[i:i + 1], mask[i:i + 1], _np(cross), _np(glob)))
    cross, glob = torch.from_numpy(outs[0].cross_attn_cond), torch.from_numpy(outs[0].global_cond)
    dit_steps, latents = [], []

    def velocity(x, t):
        v = bp.velocity(x, t, cross, glob)
        dit_steps.append(DitStep(x=_np(x), t=float(t[0]), velocity=_np(v)))
        return v

    with bp.resident("dit"):
        final = pingpong(velocity, np.asarray(noise, np.float32), bp.schedule(),
                         on_step=lambda k, x: latents.append(_np(x)))
    n = num_samples(seconds, bp.sample_rate)
    with bp.resident("decoder"):
        whole = _np(bp.decode(final))[0]  # windows stitched, for a streamed decoder
        audio = whole[:, :n] if bp.stream is None else np.concatenate(list(bp.decode_chunks(final, samples=n)), -1)[0]
    encoder = _capture_encoder(bp, prompts[0], seconds=seconds, noise=noise, seed=seed) if bp.audio_to_audio else None
    return StageOutputs(seconds=seconds, seed=seed, noise=noise, prompts=outs, latents=latents, audio=audio,
                        dit_steps=dit_steps, decoder_audio=whole, decoder_info={"streamed": bp.stream}, encoder=encoder)


def _capture_encoder(bp, prompt: str, *, seconds: float, noise: np.ndarray, seed: int) -> EncoderOutputs:
    from edgegen.sampler import init_vae_noise

    from edgegen.bundle import init_audio_shape

    init = parity_init_audio(bp.sample_rate, init_audio_shape(bp.bundle.manifest, bp.bundle.root)[-1])
    vae = init_vae_noise(None, seed=seed, steps=bp.steps, channels=bp.latent_shape[0], length=bp.latent_shape[1])
    latents = bp.init_latents((bp.sample_rate, init), vae)
    audio = bp.generate(GenerateRequest(prompt, seconds=seconds, noise=noise, truncate_prompt=True, vae_noise=vae,
                                        init_audio=(bp.sample_rate, init), init_noise_level=A2A_NOISE_LEVEL))
    return EncoderOutputs(init_audio=init[None], vae_noise=_np(vae), init_latents=_np(latents), level=A2A_NOISE_LEVEL,
                          audio=audio)


# --- the report ---------------------------------------------------------------------------------------------------

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
    """The worst of each metric over `items` (what a stage is gated on); NaN, where any, is the worst."""
    def pick(values, worst):
        return math.nan if any(math.isnan(v) for v in values) else worst(values)

    return Metrics(sqnr_db=pick([m.sqnr_db for m in items], min), rel_err=pick([m.rel_err for m in items], max),
                   max_abs=pick([m.max_abs for m in items], max), cosine=pick([m.cosine for m in items], min))


def _passes(m: Metrics, gate: dict) -> bool:
    return m.rel_err <= gate["threshold"] if gate["metric"] == "rel_err" else m.sqnr_db >= gate["threshold"]


def gated_entry(gate: dict, cases: list[dict], worst: Metrics, *, reason: str | None = None, **extra) -> dict:
    """One component's report entry; a `reason` (a non-finite output) fails it whatever the metrics say."""
    entry = {"gate": gate, "passed": reason is None and _passes(worst, gate), "metrics": worst.to_json(),
             "cases": cases, **extra}
    return entry if reason is None else {**entry, "reason": reason}


def _nonfinite(x) -> int:
    a = np.asarray(x)
    return int(a.size - np.isfinite(a).sum()) if np.issubdtype(a.dtype, np.floating) else 0


def _bad(what: str, n: int) -> str:
    return f"the bundle's {what} holds {n} non-finite value(s) (NaN or inf)"


class _Reference:
    """The reference pipeline on the bundle's inputs: shape and finiteness checked, once, for every stage."""

    def __init__(self, pipe):
        self.pipe = pipe

    def check(self, ref, got, what: str) -> np.ndarray:
        ref = _np(ref)
        if ref.shape != np.shape(got):
            raise EdgegenError(f"{what}: the bundle gives shape {list(np.shape(got))}, the reference "
                               f"{self.pipe.source.model} {list(ref.shape)}; re-export the bundle from this model")
        if n := _nonfinite(ref):
            raise EdgegenError(f"the reference {self.pipe.source.model} gives {n} non-finite value(s) (NaN or inf) "
                               f"for {what} on finite inputs; check the model's weights (parity needs a finite reference)")
        return ref


def _metrics_or_nan(ref, got) -> Metrics:
    return _NAN if _nonfinite(got) else compare(ref, got)


def _json_num(v: float):
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


@torch.no_grad()
def build_report(out: StageOutputs, pipe, manifest: dict, *, bundle: str) -> dict:
    """The edgegen.parity/1 report for a bundle's captured stage outputs against the reference `pipe`."""
    ref = _Reference(pipe)
    smp = manifest["sampler"]
    ts = schedule(smp["steps"], logsnr_max=smp["logsnr_max"], logsnr_min=smp["logsnr_min"])
    secs = torch.tensor([out.seconds], dtype=torch.float32)
    comps: dict[str, dict] = {}

    # text encoder: each prompt, on the ids the bundle's tokenizer gave (those must equal the reference's)
    tokens_match, cases, metrics, reasons = True, [], [], []
    for p in out.prompts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the over-long prompt is truncated on purpose
            ids, mask = pipe.tokenize([p.prompt])
        tokens_match &= bool(np.array_equal(p.token_ids, ids.numpy()) and np.array_equal(p.attention_mask, mask.numpy()))
        want = pipe.text_encoder(torch.from_numpy(np.asarray(p.token_ids)).long(),
                                 torch.from_numpy(np.asarray(p.attention_mask)).long(), secs)
        for name, r in zip(("cross_attn_cond", "global_cond"), want):
            got = getattr(p, name)
            r = ref.check(r, got, f"the text encoder's {name}")
            if n := _nonfinite(got):
                reasons.append(_bad(f"text encoder {name} for prompt {p.prompt[:30]!r}", n))
            mt = _metrics_or_nan(r, got)
            metrics.append(mt)
            cases.append({"prompt": p.prompt[:60], "output": name, **mt.to_json()})
    comps["text_encoder"] = gated_entry(gate_for(manifest, "text_encoder"), cases, worst_case(metrics),
                                        reason="; ".join(reasons) or None)

    # DiT, with the bundle's own conditioning for the first prompt (same input on both sides)
    p0 = out.prompts[0]
    cond_bad = _nonfinite(p0.cross_attn_cond) + _nonfinite(p0.global_cond)
    cross, glob = torch.from_numpy(p0.cross_attn_cond), torch.from_numpy(p0.global_cond)
    comps["dit"] = (_dit_steps(out, pipe, ref, cross, glob, manifest, cond_bad) if out.dit_steps is not None
                    else _dit_chain(out, pipe, ref, cross, glob, manifest, ts, cond_bad))

    # decoder on the latents the bundle's chain ended in
    latents, dec = out.latents[-1], out.audio if out.decoder_audio is None else out.decoder_audio
    if n := _nonfinite(dec):
        reason = _bad("decoder output" + (" (its input latents were non-finite)" if _nonfinite(latents) else ""), n)
        mt, mrstft = _NAN, None
    else:
        r = ref.check(pipe.decoder(torch.from_numpy(latents))[0, :, :dec.shape[-1]], dec, "the decoder's audio")
        reason, mt, mrstft = None, compare(r, dec), mrstft_distance(r, dec)
    comps["decoder"] = gated_entry(gate_for(manifest, "decoder"), [mt.to_json()], mt, reason=reason,
                                   mrstft=None if mrstft is None else _json_num(mrstft), **out.decoder_info)

    # end to end from the same injected noise
    all_fp32 = all(c["gate"]["metric"] == "rel_err" for c in comps.values())
    e2e_reason = None
    if n := _nonfinite(out.audio):
        e2e_reason, e2e, mrstft = _bad("end-to-end audio", n), _NAN, None
    else:
        try:
            ref_wav = pipe.generate(GenerateRequest(p0.prompt, seconds=out.seconds, noise=out.noise, steps=smp["steps"],
                                                    sigmas=ts))
        except EdgegenError as exc:
            raise EdgegenError(f"the reference {pipe.source.model} fails end to end: {exc}") from None
        ref_wav = ref.check(ref_wav, out.audio, "the end-to-end audio")
        e2e, mrstft = compare(ref_wav, out.audio), mrstft_distance(ref_wav, out.audio)
    end_to_end = {"gated": all_fp32, "threshold_rel_err": E2E_REL_TOL if all_fp32 else None,
                  "passed": e2e_reason is None and ((e2e.rel_err <= E2E_REL_TOL) if all_fp32 else True),
                  "metrics": e2e.to_json(), "mrstft": None if mrstft is None else _json_num(mrstft),
                  "seconds": out.seconds, "seed": out.seed}
    if e2e_reason:
        end_to_end["reason"] = e2e_reason
    extra = {}
    if out.encoder is not None:
        comps["encoder"], extra["audio_to_audio"] = _audio_to_audio(out, pipe, ref, manifest, comps)
    passed = (tokens_match and all(c["passed"] for c in comps.values()) and end_to_end["passed"]
              and all(e["passed"] for e in extra.values()))
    return {"schema": REPORT_SCHEMA, "bundle": bundle, "backend": manifest["backend"],
            "recipe": manifest["recipe"]["name"], "target": manifest["target"]["name"], "model": pipe.source.model,
            "tokens_match": tokens_match, "passed": passed, "components": comps, "end_to_end": end_to_end, **extra}


def _audio_to_audio(out: StageOutputs, pipe, ref: _Reference, manifest: dict, comps: dict) -> tuple[dict, dict]:
    """(the encoder's entry, the audio_to_audio row): the init latents against the reference encoder's on the same
    prepared audio and VAE noise, and the audio-to-audio generation against the reference's from the same noise."""
    from edgegen.components.oobleck import vae_bottleneck

    enc = out.encoder
    if n := _nonfinite(enc.init_latents):
        reason, mt = _bad("encoder's init latents", n), _NAN
    else:
        r = ref.check(vae_bottleneck(pipe.encoder(torch.from_numpy(enc.init_audio)), torch.from_numpy(enc.vae_noise)),
                      enc.init_latents, "the encoder's init latents")
        reason, mt = None, compare(r, enc.init_latents)
    encoder = gated_entry(gate_for(manifest, "encoder"), [mt.to_json()], mt, reason=reason)
    gated = all(c["gate"]["metric"] == "rel_err" for c in comps.values()) and encoder["gate"]["metric"] == "rel_err"
    row = {"gated": gated, "threshold_rel_err": E2E_REL_TOL if gated else None, "init_noise_level": enc.level,
           "seconds": out.seconds, "seed": out.seed}
    if n := _nonfinite(enc.audio):
        return encoder, {**row, "passed": False, "metrics": _NAN.to_json(), "mrstft": None,
                         "reason": _bad("audio-to-audio output", n)}
    smp = manifest["sampler"]
    want = pipe.generate(GenerateRequest(
        out.prompts[0].prompt, seconds=out.seconds, noise=out.noise, truncate_prompt=True, steps=smp["steps"],
        sigmas=schedule(smp["steps"], logsnr_max=smp["logsnr_max"], logsnr_min=smp["logsnr_min"],
                        init_noise_level=enc.level),
        init_audio=(pipe.sample_rate, enc.init_audio[0]), init_noise_level=enc.level, vae_noise=enc.vae_noise))
    want = ref.check(want, enc.audio, "the audio-to-audio output")
    m = compare(want, enc.audio)
    return encoder, {**row, "passed": (m.rel_err <= E2E_REL_TOL) if gated else True, "metrics": m.to_json(),
                     "mrstft": _json_num(mrstft_distance(want, enc.audio))}


def _steps_reason(what: str, bad: list[tuple[int, int]], cond_bad: int) -> str | None:
    """One readable reason for the non-finite steps [(step, count)], or None."""
    if cond_bad:
        return f"not checked: the DiT's conditioning (the bundle's text encoder output) holds {cond_bad} non-finite value(s)"
    if not bad:
        return None
    (k, n), later = bad[0], [str(k) for k, _ in bad[1:]]
    return _bad(f"{what} at step {k}", n) + (f" (and at the later step(s) {', '.join(later)})" if later else "")


def _dit_steps(out, pipe, ref, cross, glob, manifest, cond_bad) -> dict:
    """Each step's bundle velocity vs the reference DiT on the same input: all steps gated (each is isolated)."""
    cases, metrics, bad = [], [], []
    for k, s in enumerate(out.dit_steps):
        n = _nonfinite(s.velocity) or _nonfinite(s.x)  # a non-finite input comes from an earlier step's output
        if n:
            bad.append((k, n))
        if n or cond_bad:
            mt = _NAN
        else:
            r = ref.check(pipe.dit(torch.from_numpy(s.x), torch.tensor([s.t], dtype=torch.float32), cross, glob),
                          s.velocity, f"the DiT's velocity at step {k}")
            mt = compare(r, s.velocity)
        metrics.append(mt)
        cases.append({"t": round(s.t, 6), **mt.to_json()})
    return gated_entry(gate_for(manifest, "dit"), cases, worst_case(metrics),
                       reason=_steps_reason("DiT output", bad, cond_bad))


def _dit_chain(out, pipe, ref, cross, glob, manifest, ts, cond_bad) -> dict:
    """Only the latents after each step are known (the native runner's dumps): the bundle's chain vs the reference
    chain from the same noise and the bundle's conditioning, compared as denoised estimates.

    Latents after step k < steps-1 are (1 - t) x0 + t noise with t = ts[k+1] close to 1 early on, so they are mostly
    the (identical) injected noise and would hide a DiT error ~100x; x0 = (x - t noise) / (1 - t) in float64
    compares what the DiT actually produced. Only step 0 is gated (same input on both sides, so it isolates the
    DiT); later steps compound and are reported. Every step must be finite."""
    steps, noise = len(out.latents), out.noise
    ref_lat: list[np.ndarray] = []
    if not cond_bad:
        pingpong(lambda x, t: pipe.dit(x, t, cross, glob), torch.from_numpy(noise), ts,
                 on_step=lambda k, x: ref_lat.append(x.numpy().copy()))

    def denoised(k: int, x: np.ndarray) -> np.ndarray:
        if k + 1 == steps:
            return x.astype(np.float64)
        t = float(ts[k + 1])
        return (x.astype(np.float64) - t * noise[k + 1].astype(np.float64)) / (1.0 - t)

    cases, step_metrics, bad = [], [], []
    for k, got in enumerate(out.latents):
        if n := _nonfinite(got):
            bad.append((k, n))
        if n or cond_bad:
            mt, lat_err = _NAN, math.nan
        else:
            r = ref.check(ref_lat[k], got, f"the latents after DiT step {k}")
            mt, lat_err = compare(denoised(k, r), denoised(k, got)), compare(r, got).rel_err
        step_metrics.append(mt)
        cases.append({"step": k, "t": round(float(ts[k]), 6), "gated": k == 0, **mt.to_json(),
                      "latents_rel_err": _json_num(lat_err)})
    return gated_entry(gate_for(manifest, "dit"), cases, step_metrics[0],
                       reason=_steps_reason("latents after the DiT", bad, cond_bad),
                       gated_on="step 0 denoised estimate; later steps compound and are reported only")


def check_parity(bp, pipe, *, seed: int = 0, seconds: float | None = None, prompts: tuple[str, ...] = PROMPTS,
                 threads: int | None = None) -> dict:
    """The report for `bp` run here against the reference `pipe`. `bp` is a BundlePipeline, or a bundle folder
    or .zip: then its source is checked before its artifacts load, and what it unpacked is removed after."""
    from edgegen.bundle_pipeline import BundlePipeline

    if isinstance(bp, BundlePipeline):
        check_source(bp.bundle.manifest, pipe)
        return _check_parity(bp, pipe, seed=seed, seconds=seconds, prompts=prompts, label=str(bp.bundle.root))
    from edgegen.bundle import open_bundle
    from edgegen.runtime import load_artifacts

    with open_bundle(bp) as bundle:
        check_source(bundle.manifest, pipe)
        threads = threads or bundle.manifest["target"].get("threads")
        loaded = BundlePipeline(bundle, load_artifacts(bundle, threads=threads), 0.0, threads=threads)
        return _check_parity(loaded, pipe, seed=seed, seconds=seconds, prompts=prompts, label=str(bp))


def _check_parity(bp, pipe, *, seed, seconds, prompts, label: str) -> dict:
    m = bp.bundle.manifest
    seconds = parity_seconds(seconds, pipe=pipe, manifest=m)
    noise = gaussian_noise(seed, (bp.steps, *bp.latent_shape))
    outputs = capture_bundle(bp, prompts=prompts, seconds=seconds, noise=noise, seed=seed)
    return build_report(outputs, pipe, m, bundle=label)


def format_report(report: dict) -> str:
    """The per-stage table (MR-STFT distance, 0 = identical spectra, where the stage's output is audio)."""
    def num(v, fmt):
        return v if isinstance(v, str) else format(v, fmt)

    lines = [f"parity  {report['bundle']}  ({report['backend']}, recipe {report['recipe']}) vs {report['model']}",
             f"{'stage':<14}{'SQNR dB':>9}{'rel err':>11}{'max abs':>11}{'cosine':>10}{'MR-STFT':>9}  {'gate':<18}"
             "result"]
    rows = list(report["components"].items()) + [("end_to_end", report["end_to_end"])]
    if "audio_to_audio" in report:
        rows.append(("audio_to_audio", report["audio_to_audio"]))
    for name, c in rows:
        mt = c["metrics"]
        if name in ("end_to_end", "audio_to_audio"):
            gate = f"rel <= {E2E_REL_TOL:g}" if c["gated"] else "report only"
        else:
            g = c["gate"]
            gate = f"rel <= {g['threshold']:g}" if g["metric"] == "rel_err" else f"SQNR >= {g['threshold']:g} dB"
        lines.append(f"{name:<14}{num(mt['sqnr_db'], '9.1f'):>9}{num(mt['rel_err'], '11.2e'):>11}"
                     f"{num(mt['max_abs'], '11.2e'):>11}{num(mt['cosine'], '10.6f'):>10}"
                     f"{'-' if c.get('mrstft') is None else num(c['mrstft'], '9.4f'):>9}  {gate:<18}"
                     f"{'PASS' if c['passed'] else 'FAIL'}")
    for name, c in rows:
        if c.get("reason"):
            lines.append(f"{name:<14}{c['reason']}: FAIL")
    if not report["tokens_match"]:
        lines.append("tokenizer     the bundle's tokenizer gives different ids than the model's: FAIL")
    lines.append(f"overall: {'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)
