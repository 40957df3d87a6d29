"""Generate into a WAV file: what `edgegen generate` (the PyTorch reference) and `edgegen run` (a bundle) do.

    job = WavRequest("rain on a tin roof", Path("out.wav"), seconds=0.5)
    result = generate_wav(job, model="random:tiny")       # the PyTorch reference
    result = run_wav(job, bundle=Path("bundle"))           # a bundle in its runtime
    print("\\n".join(result.lines))       # "wrote out.wav (0.50 s, ...)" and the stage times

Bad input is refused before anything loads where it can be (the output path, the noise and init-audio files, the
request's own fields), and after the load before any work (seconds, prompt length, the noise's shape). The WAV is
written whole, or streamed into a partial file renamed when complete; an error or SIGTERM leaves nothing behind.
`log` gets the notes a user sees on stderr; `bar(steps)` is a context manager whose value has `update(1)` (a
progress bar; none by default).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgegen.audio_io import check_output, read_noise, wav_out
from edgegen.common import DEFAULT_SECONDS, Timings, default_seconds, sigterm_unwinds
from edgegen.errors import EdgegenError
from edgegen.init_audio import read_init
from edgegen.request import GenerateRequest


class _NoBar:
    def update(self, n: int) -> None:
        pass


def no_bar(steps: int):
    return contextlib.nullcontext(_NoBar())


def _quiet(line: str) -> None:
    pass


@dataclass(frozen=True)
class WavRequest:
    """One WAV to make, as `edgegen generate` and `edgegen run` take it (the C++ runner's `Request`): what to generate,
    where it goes and how it is written. Files are paths, read when the request runs."""
    prompt: str
    output: Path
    seconds: float | None = None          # None: `default_seconds` (10 s, or the model's maximum when less)
    seed: int = 0
    noise: Path | None = None             # a .npy [steps, 64, T] of chain noise instead of the seed's
    truncate_prompt: bool = False
    init_audio: Path | None = None        # audio-to-audio: the recording to start from
    init_noise_level: float | None = None  # with init_audio: S, 0.5 by default
    pcm16: bool = False                   # 16-bit PCM instead of float32
    stream: bool = False                  # write each decoded chunk as soon as it is ready
    steps: int = 8                        # the reference only: a bundle runs the steps it was exported for
    cfg_scale: float = 1.0                # the reference only

    def generation(self) -> GenerateRequest:
        """The GenerateRequest before the model is known (seconds resolved later when None); checks its fields."""
        return GenerateRequest(self.prompt, seconds=DEFAULT_SECONDS if self.seconds is None else self.seconds,
                               steps=self.steps, seed=self.seed, cfg_scale=self.cfg_scale,
                               truncate_prompt=self.truncate_prompt)


@dataclass(frozen=True)
class Generated:
    output: Path
    seconds: float           # of audio written
    lines: tuple[str, ...]   # what the command prints: the `wrote` line and the stage times


def generate_wav(job: WavRequest, *, model: str, t5: Path | None = None, t5_precision: str = "fp16",
                 log: Callable[[str], None] = _quiet, bar=no_bar) -> Generated:
    """`job` with the PyTorch reference pipeline of `model`."""
    from edgegen.pipeline import load_pipeline

    request = job.generation()
    check_output(job.output, inputs={"--noise": job.noise, "--model": model, "--t5": t5, "--init-audio": job.init_audio})
    init, level = read_init(job.init_audio, job.init_noise_level)  # before the model loads
    start = time.perf_counter()
    pipe = load_pipeline(model, t5=t5, t5_precision=t5_precision)
    load_s = time.perf_counter() - start
    if job.seconds is None:
        request = replace(request, seconds=default_seconds(pipe.max_seconds))
    request, tokens = _prepare(pipe, replace(request, init_audio=init, init_noise_level=level), noise=job.noise,
                               init_length=pipe.latent_length * pipe.config.vae.hop, log=log)
    wav, timings = _write(lambda **hooks: pipe.generate(request, stream=job.stream, **hooks), steps=request.steps,
                          job=job, sample_rate=pipe.sample_rate, log=log, bar=bar)
    audio_s = wav.shape[1] / pipe.sample_rate
    return Generated(job.output, audio_s, (
        f"wrote {job.output} ({audio_s:.2f} s, {wav.shape[0]} ch, {pipe.sample_rate} Hz)"
        + _truncated(tokens, pipe.tokenizer.max_length),
        stage_line({"load": load_s, **timings.stages}) + f"  (dit {timings.stages['dit'] / request.steps:.3f}s/step)"))


def run_wav(job: WavRequest, *, bundle: Path, threads: int | None = None, low_memory: bool = False,
            weight_cache: Path | None = None, no_weight_cache: bool = False, verbose: bool = False,
            log: Callable[[str], None] = _quiet, bar=no_bar) -> Generated:
    """`job` with a bundle's artifacts in their runtime (`job.stream`: for bundles exported with a decoder window).
    `verbose`: `log` the CPU's int8 dot-product support, and a warning when the bundle computes in int8 without it.
    No torch is loaded for a LiteRT bundle without init audio."""
    from edgegen.bundle import init_audio_shape
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.weight_cache import WeightCache

    reference = WavRequest(job.prompt, job.output)  # the reference-only fields at their defaults
    if (job.steps, job.cfg_scale) != (reference.steps, reference.cfg_scale):
        raise EdgegenError("a bundle runs the steps it was exported for, without guidance: steps and cfg_scale "
                           "apply to the reference (`edgegen generate`) only")
    request = replace(job.generation(), steps=None)
    check_output(job.output, inputs={"--bundle": bundle, "--noise": job.noise, "--init-audio": job.init_audio})
    init, level = read_init(job.init_audio, job.init_noise_level)  # before the bundle loads
    cache = WeightCache.from_options(weight_cache, off=no_weight_cache)
    with BundlePipeline.open(bundle, threads=threads, low_memory=low_memory, audio_to_audio=init is not None,
                             weight_cache=cache) as bp:  # leaving removes a .zip bundle's unpacked copy
        if job.stream and bp.stream is None:
            raise EdgegenError(f"{bundle}: {bp.stream_refusal()}")
        length = init_audio_shape(bp.bundle.manifest, bundle)[-1] if init is not None else 0
        if job.seconds is None:
            request = replace(request, seconds=default_seconds(bp.max_seconds))
        if verbose:
            _log_cpu(bp.bundle.manifest, log)
        request, tokens = _prepare(bp, replace(request, init_audio=init, init_noise_level=level), noise=job.noise,
                                   init_length=length, log=log)
        wav, timings = _write(lambda **hooks: bp.generate(request, **hooks), steps=bp.steps, job=job,
                              sample_rate=bp.sample_rate, log=log, bar=bar)
    audio_s = wav.shape[1] / bp.sample_rate
    return Generated(job.output, audio_s, (
        f"wrote {job.output} ({audio_s:.2f} s) with {bp.backend_label}" + _truncated(tokens, bp.tokenizer.max_length),
        stage_line({"load": bp.load_s, **timings.stages})))


def _log_cpu(manifest, log: Callable[[str], None]) -> None:
    from edgegen.bench import describe_cpu, host_machine, int8_layers, int8_warning

    machine = host_machine()
    log(f"cpu: {describe_cpu(machine)}")
    warning = int8_warning(int8_layers(manifest), machine["int8_features"])
    if warning:
        log(f"edgegen: warning: {warning}")


def _prepare(pipe, request: GenerateRequest, *, noise: Path | None, init_length: int,
             log: Callable[[str], None]) -> tuple[GenerateRequest, int]:
    """`request` checked against the loaded model or bundle (`pipe.plan`), with the noise file read at its shape
    and the init audio brought to its rate and length (each change noted in `log`); and the prompt's tokens."""
    plan = pipe.plan(request)
    injected = read_noise(noise, plan.noise.shape) if noise else None
    init = request.init_audio
    if init is not None:
        from edgegen.init_audio import prepare_init_audio

        prepared, notes = prepare_init_audio(*init, sample_rate=pipe.sample_rate, length=init_length)
        for note in notes:
            log(f"note: {note}")
        init = pipe.sample_rate, prepared[0].numpy()
    return replace(request, noise=injected, init_audio=init), plan.tokens


def _write(generate: Callable, *, steps: int, job: WavRequest, sample_rate: int, log: Callable[[str], None], bar):
    """Run `generate(on_step=, on_chunk=, timings=)` into `job.output`: (audio, timings)."""
    timings = Timings()
    # SIGTERM unwinds too, so a stream's partial file is removed as on an error or Ctrl-C
    with sigterm_unwinds(), wav_out(job.output, sample_rate, pcm16=job.pcm16, stream=job.stream, log=log) as (
            on_chunk, finish):
        with bar(steps) as b:
            wav = generate(on_step=lambda i, x: b.update(1), on_chunk=on_chunk, timings=timings)
        finish(wav)
    return wav, timings


def stage_line(stages: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}s" for k, v in stages.items())


def _truncated(tokens: int, max_length: int) -> str:
    """What the `wrote` line adds when truncate_prompt cut the prompt (a warning has said so too)."""
    return f"; prompt truncated from {tokens} to {max_length} tokens" if tokens > max_length else ""
