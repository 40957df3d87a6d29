"""Parity of a bundle against the PyTorch reference it came from, stage by stage, on representative inputs.

    report = check_parity(BundlePipeline.open(path), load_pipeline(model))     # a frozen ParityReport
    report.passed, report.row("dit").metrics.sqnr_db, report.to_json()        # the JSON: schema edgegen.parity/2

Two halves, so every runtime gets the same report: a bundle's outputs at each stage are captured into
`StageOutputs` (`capture_bundle` here, from the Python runtime; `edgegen.adb` from the native runner's --dump
files on a phone), and `build_report(outputs, pipe, manifest)` runs the reference on the same inputs and gates.

A report is one `Row` per stage (text_encoder, dit, decoder[, encoder], end_to_end[, audio_to_audio]), each with the
stage's worst-case `Metrics`, its `Gate` (or None) and `passed`: True or False where the stage is gated, None where it
is only reported (the end-to-end row of a quantized bundle; "not gated" in the table, `null` in the JSON). A
non-finite output fails its row gated or not. The report passes when the tokenizers agree and no row failed.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edgegen.common import ARTIFACTS, check_seconds, num_samples, write_text_atomic
from edgegen.errors import EdgegenError
from edgegen.manifest import Manifest
from edgegen.metrics import Metrics, compare, json_number, mrstft_distance
from edgegen.noise import gaussian_noise
from edgegen.recipes import FP32_REL_TOL
from edgegen.request import GenerateRequest
from edgegen.sampler import pingpong, schedule

REPORT_SCHEMA = "edgegen.parity/2"  # 2: an ungated row's `passed` is null (1 wrote true)
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

def check_source(manifest: Manifest, pipe) -> None:
    """Refuse (one line naming both) a bundle exported from another model config or latent shape than `pipe`'s;
    warn when only the checkpoint file differs (the same weights re-saved hash differently: the gates decide)."""
    src, here = manifest.source, pipe.source
    shape_b, shape_m = manifest.latent_shape, (pipe.config.dit.io_channels, pipe.latent_length)
    fmt = lambda s: "x".join(map(str, s))  # noqa: E731
    config_differs = src.config_sha256 not in (None, here.config_sha256)
    if config_differs or (shape_b and shape_b != shape_m) or manifest.sample_rate != pipe.sample_rate:
        what = (f"config sha256 {str(src.config_sha256)[:12]} vs {here.config_sha256[:12]}" if config_differs
                else f"latents {fmt(shape_b)} at {manifest.sample_rate} Hz vs {fmt(shape_m)} at {pipe.sample_rate} Hz")
        raise EdgegenError(f"the bundle was exported from {src.model}, not from {here.model} ({what}); "
                           "run parity with the --model the bundle was exported from")
    if src.checkpoint_sha256 not in (None, here.checkpoint_sha256):
        warnings.warn(f"the bundle's checkpoint ({src.model}, sha256 {src.checkpoint_sha256[:12]}) is not the "
                      f"file {here.model} loads (sha256 {here.checkpoint_sha256[:12]}); comparing anyway: the same "
                      "config, and the same weights re-saved hash differently", UserWarning, stacklevel=2)


def parity_seconds(seconds: float | None, *, pipe, manifest: Manifest) -> float:
    """The clip length parity compares: the longest both make, or `seconds` when it is in range."""
    top = min(pipe.max_seconds, manifest.max_seconds)
    if seconds is None:
        return top
    check_seconds(seconds, max_seconds=top, sample_rate=manifest.sample_rate, owner="this bundle and model")
    return seconds


def check_report_path(path: Path, *, inputs: dict) -> None:
    """Before any work: the --json report can be written at `path` (and is none of the inputs)."""
    from edgegen.audio_io import check_output

    check_output(Path(path), inputs=inputs)


def write_report(path: Path, report: "ParityReport") -> None:
    """The report as JSON at `path`, atomically (never a half-written file)."""
    write_text_atomic(path, json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")


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
                        dit_steps=dit_steps, decoder_audio=whole,
                        decoder_info={"streamed": None if bp.stream is None else bp.stream.to_json()}, encoder=encoder)


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

@dataclass(frozen=True)
class Gate:
    """What a stage must meet: `metric` "rel_err" (at most `threshold`) or "sqnr_db" (at least `threshold` dB)."""
    metric: str
    threshold: float

    def passes(self, m: Metrics) -> bool:
        return m.rel_err <= self.threshold if self.metric == "rel_err" else m.sqnr_db >= self.threshold

    def to_json(self) -> dict:
        return {"metric": self.metric, "threshold": self.threshold}

    def __str__(self) -> str:
        return f"rel <= {self.threshold:g}" if self.metric == "rel_err" else f"SQNR >= {self.threshold:g} dB"


@dataclass(frozen=True)
class Row:
    """One stage: its worst-case `metrics`, its `gate` (None: reported only) and whether it passed (None exactly when
    not gated and nothing non-finite came out; a `reason`, a non-finite output, fails it gated or not). `mrstft`
    (MR-STFT distance) is carried where the stage's output is audio (`audio`); `cases` are a component's inputs one
    by one; `info` holds the stage's other JSON fields (decoder: streamed; DiT: gated_on; end to end: seconds, seed)."""
    name: str
    metrics: Metrics
    gate: Gate | None
    passed: bool | None
    reason: str | None = None
    audio: bool = False
    mrstft: float | None = None
    cases: tuple[dict, ...] = ()
    info: dict = field(default_factory=dict)

    @classmethod
    def judged(cls, name: str, metrics: Metrics, gate: Gate | None, *, reason: str | None = None, **kw) -> "Row":
        """The row with `passed` decided: False with a reason, else the gate's verdict, else None (not gated)."""
        passed = False if reason is not None else (None if gate is None else gate.passes(metrics))
        return cls(name=name, metrics=metrics, gate=gate, passed=passed, reason=reason, **kw)

    @property
    def component(self) -> bool:
        return self.name in ARTIFACTS

    def to_json(self) -> dict:
        """A component's entry {gate, passed, metrics, cases, ...} or a whole-chain row {gated, threshold_rel_err,
        passed, metrics, mrstft, ...} (the layout edgegen.parity/1 had; `passed` null where not gated)."""
        if self.component:
            out = {"gate": self.gate.to_json(), "passed": self.passed, "metrics": self.metrics.to_json(),
                   "cases": list(self.cases)}
        else:
            out = {"gated": self.gate is not None, "threshold_rel_err": None if self.gate is None else self.gate.threshold,
                   "passed": self.passed, "metrics": self.metrics.to_json()}
        if self.audio:
            out["mrstft"] = None if self.mrstft is None else json_number(self.mrstft)
        out.update(self.info)
        return out if self.reason is None else {**out, "reason": self.reason}


@dataclass(frozen=True)
class ParityReport:
    """Parity of `bundle` against the reference `model`: one Row per stage, in pipeline order (components first)."""
    bundle: str
    backend: str
    recipe: str
    target: str
    model: str
    tokens_match: bool
    rows: tuple[Row, ...]

    @property
    def passed(self) -> bool:
        return self.tokens_match and all(r.passed is not False for r in self.rows)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    @property
    def components(self) -> dict[str, Row]:
        return {r.name: r for r in self.rows if r.component}

    def without(self, names) -> "ParityReport":
        """The report without the rows `names` (stages a reference stood in for)."""
        return replace(self, rows=tuple(r for r in self.rows if r.name not in names))

    def to_json(self) -> dict:
        out = {"schema": REPORT_SCHEMA, "bundle": self.bundle, "backend": self.backend, "recipe": self.recipe,
               "target": self.target, "model": self.model, "tokens_match": self.tokens_match, "passed": self.passed,
               "components": {r.name: r.to_json() for r in self.rows if r.component}}
        out.update({r.name: r.to_json() for r in self.rows if not r.component})
        return out


def gate_for(manifest: Manifest, component: str) -> Gate:
    """rel_err <= 1e-4 for an fp32 component, else the recipe's SQNR floor."""
    comp = manifest.recipe.components[component]
    fp16_ok = manifest.target.fp16_compute
    schemes = {(r.fallback or "fp32") if (r.scheme == "fp16" and not fp16_ok) else r.scheme for r in comp.rules}
    if schemes == {"fp32"}:
        return Gate("rel_err", FP32_REL_TOL)
    return Gate("sqnr_db", float(comp.sqnr_floor_db))


def worst_case(items: list[Metrics]) -> Metrics:
    """The worst of each metric over `items` (what a stage is gated on); NaN, where any, is the worst."""
    def pick(values, worst):
        return math.nan if any(math.isnan(v) for v in values) else worst(values)

    return Metrics(sqnr_db=pick([m.sqnr_db for m in items], min), rel_err=pick([m.rel_err for m in items], max),
                   max_abs=pick([m.max_abs for m in items], max), cosine=pick([m.cosine for m in items], min))


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


@torch.no_grad()
def build_report(out: StageOutputs, pipe, manifest: Manifest, *, bundle: str) -> ParityReport:
    """The report for a bundle's captured stage outputs against the reference `pipe`."""
    ref = _Reference(pipe)
    smp = manifest.sampler
    ts = schedule(smp.steps, logsnr_max=smp.logsnr_max, logsnr_min=smp.logsnr_min)
    secs = torch.tensor([out.seconds], dtype=torch.float32)
    rows: list[Row] = []

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
    rows.append(Row.judged("text_encoder", worst_case(metrics), gate_for(manifest, "text_encoder"),
                           reason="; ".join(reasons) or None, cases=tuple(cases)))

    # DiT, with the bundle's own conditioning for the first prompt (same input on both sides)
    p0 = out.prompts[0]
    cond_bad = _nonfinite(p0.cross_attn_cond) + _nonfinite(p0.global_cond)
    cross, glob = torch.from_numpy(p0.cross_attn_cond), torch.from_numpy(p0.global_cond)
    rows.append(_dit_steps(out, pipe, ref, cross, glob, manifest, cond_bad) if out.dit_steps is not None
                else _dit_chain(out, pipe, ref, cross, glob, manifest, ts, cond_bad))

    # decoder on the latents the bundle's chain ended in
    latents, dec = out.latents[-1], out.audio if out.decoder_audio is None else out.decoder_audio
    if n := _nonfinite(dec):
        reason = _bad("decoder output" + (" (its input latents were non-finite)" if _nonfinite(latents) else ""), n)
        mt, mrstft = _NAN, None
    else:
        r = ref.check(pipe.decoder(torch.from_numpy(latents))[0, :, :dec.shape[-1]], dec, "the decoder's audio")
        reason, mt, mrstft = None, compare(r, dec), mrstft_distance(r, dec)
    rows.append(Row.judged("decoder", mt, gate_for(manifest, "decoder"), reason=reason, audio=True, mrstft=mrstft,
                           cases=(mt.to_json(),), info=dict(out.decoder_info)))

    # end to end from the same injected noise: gated only when every component is fp32
    all_fp32 = all(r.gate.metric == "rel_err" for r in rows)
    e2e_reason = None
    if n := _nonfinite(out.audio):
        e2e_reason, e2e, mrstft = _bad("end-to-end audio", n), _NAN, None
    else:
        try:
            ref_wav = pipe.generate(GenerateRequest(p0.prompt, seconds=out.seconds, noise=out.noise, steps=smp.steps,
                                                    sigmas=ts))
        except EdgegenError as exc:
            raise EdgegenError(f"the reference {pipe.source.model} fails end to end: {exc}") from None
        ref_wav = ref.check(ref_wav, out.audio, "the end-to-end audio")
        e2e, mrstft = compare(ref_wav, out.audio), mrstft_distance(ref_wav, out.audio)
    end_to_end = Row.judged("end_to_end", e2e, Gate("rel_err", E2E_REL_TOL) if all_fp32 else None, reason=e2e_reason,
                            audio=True, mrstft=mrstft, info={"seconds": out.seconds, "seed": out.seed})
    if out.encoder is not None:
        encoder, a2a = _audio_to_audio(out, pipe, ref, manifest, rows)
        rows += [encoder, end_to_end, a2a]
    else:
        rows.append(end_to_end)
    return ParityReport(bundle=bundle, backend=manifest.backend, recipe=manifest.recipe.name,
                        target=manifest.target.name, model=pipe.source.model, tokens_match=tokens_match,
                        rows=tuple(rows))


def _audio_to_audio(out: StageOutputs, pipe, ref: _Reference, manifest: Manifest, rows: list[Row]) -> tuple[Row, Row]:
    """(the encoder's row, the audio_to_audio row): the init latents against the reference encoder's on the same
    prepared audio and VAE noise, and the audio-to-audio generation against the reference's from the same noise."""
    from edgegen.components.oobleck import vae_bottleneck

    enc = out.encoder
    if n := _nonfinite(enc.init_latents):
        reason, mt = _bad("encoder's init latents", n), _NAN
    else:
        r = ref.check(vae_bottleneck(pipe.encoder(torch.from_numpy(enc.init_audio)), torch.from_numpy(enc.vae_noise)),
                      enc.init_latents, "the encoder's init latents")
        reason, mt = None, compare(r, enc.init_latents)
    encoder = Row.judged("encoder", mt, gate_for(manifest, "encoder"), reason=reason, cases=(mt.to_json(),))
    gated = all(r.gate.metric == "rel_err" for r in (*rows, encoder))
    gate = Gate("rel_err", E2E_REL_TOL) if gated else None
    info = {"init_noise_level": enc.level, "seconds": out.seconds, "seed": out.seed}
    if n := _nonfinite(enc.audio):
        return encoder, Row.judged("audio_to_audio", _NAN, gate, reason=_bad("audio-to-audio output", n), audio=True,
                                   info=info)
    smp = manifest.sampler
    want = pipe.generate(GenerateRequest(
        out.prompts[0].prompt, seconds=out.seconds, noise=out.noise, truncate_prompt=True, steps=smp.steps,
        sigmas=schedule(smp.steps, logsnr_max=smp.logsnr_max, logsnr_min=smp.logsnr_min,
                        init_noise_level=enc.level),
        init_audio=(pipe.sample_rate, enc.init_audio[0]), init_noise_level=enc.level, vae_noise=enc.vae_noise))
    want = ref.check(want, enc.audio, "the audio-to-audio output")
    return encoder, Row.judged("audio_to_audio", compare(want, enc.audio), gate, audio=True,
                               mrstft=mrstft_distance(want, enc.audio), info=info)


def _steps_reason(what: str, bad: list[tuple[int, int]], cond_bad: int) -> str | None:
    """One readable reason for the non-finite steps [(step, count)], or None."""
    if cond_bad:
        return f"not checked: the DiT's conditioning (the bundle's text encoder output) holds {cond_bad} non-finite value(s)"
    if not bad:
        return None
    (k, n), later = bad[0], [str(k) for k, _ in bad[1:]]
    return _bad(f"{what} at step {k}", n) + (f" (and at the later step(s) {', '.join(later)})" if later else "")


def _dit_steps(out, pipe, ref, cross, glob, manifest, cond_bad) -> Row:
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
    return Row.judged("dit", worst_case(metrics), gate_for(manifest, "dit"),
                      reason=_steps_reason("DiT output", bad, cond_bad), cases=tuple(cases))


def _dit_chain(out, pipe, ref, cross, glob, manifest, ts, cond_bad) -> Row:
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
                      "latents_rel_err": json_number(lat_err)})
    return Row.judged("dit", step_metrics[0], gate_for(manifest, "dit"),
                      reason=_steps_reason("latents after the DiT", bad, cond_bad), cases=tuple(cases),
                      info={"gated_on": "step 0 denoised estimate; later steps compound and are reported only"})


def check_parity(bp, pipe, *, seed: int = 0, seconds: float | None = None, prompts: tuple[str, ...] = PROMPTS,
                 threads: int | None = None) -> ParityReport:
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
        threads = threads or bundle.manifest.target.threads
        loaded = BundlePipeline(bundle, load_artifacts(bundle, threads=threads), 0.0, threads=threads)
        return _check_parity(loaded, pipe, seed=seed, seconds=seconds, prompts=prompts, label=str(bp))


def _check_parity(bp, pipe, *, seed, seconds, prompts, label: str) -> ParityReport:
    m = bp.bundle.manifest
    seconds = parity_seconds(seconds, pipe=pipe, manifest=m)
    noise = gaussian_noise(seed, (bp.steps, *bp.latent_shape))
    outputs = capture_bundle(bp, prompts=prompts, seconds=seconds, noise=noise, seed=seed)
    return build_report(outputs, pipe, m, bundle=label)


def format_report(report: ParityReport) -> str:
    """The per-stage table (MR-STFT distance, 0 = identical spectra, where the stage's output is audio)."""
    def num(v, fmt):
        return v if isinstance(v, str) else format(v, fmt)

    lines = [f"parity  {report.bundle}  ({report.backend}, recipe {report.recipe}) vs {report.model}",
             f"{'stage':<14}{'SQNR dB':>9}{'rel err':>11}{'max abs':>11}{'cosine':>10}{'MR-STFT':>9}  {'gate':<18}"
             "result"]
    for r in report.rows:
        mt = r.metrics.to_json()
        mrstft = "-" if r.mrstft is None else num(json_number(r.mrstft), "9.4f")
        result = "not gated" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append(f"{r.name:<14}{num(mt['sqnr_db'], '9.1f'):>9}{num(mt['rel_err'], '11.2e'):>11}"
                     f"{num(mt['max_abs'], '11.2e'):>11}{num(mt['cosine'], '10.6f'):>10}"
                     f"{mrstft:>9}  {'report only' if r.gate is None else str(r.gate):<18}{result}")
    for r in report.rows:
        if r.reason:
            lines.append(f"{r.name:<14}{r.reason}: FAIL")
    if not report.tokens_match:
        lines.append("tokenizer     the bundle's tokenizer gives different ids than the model's: FAIL")
    lines.append(f"overall: {'PASS' if report.passed else 'FAIL'}")
    return "\n".join(lines)
