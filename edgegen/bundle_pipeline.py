"""Generate audio from a bundle: the bundle's tokenizer and runtime, the shared ping-pong sampler.

    bp = BundlePipeline.open("bundle_dir", threads=2)
    wav = bp.generate(GenerateRequest("a dog barking", seconds=5.0, seed=0))   # np.float32 [2, n]

Same contract as `Pipeline.generate` (and the same noise for the same seed), so a bundle and the
PyTorch reference can be compared sample for sample. A bundle whose manifest has `decoder_stream` decodes in
windows (`edgegen.streaming`): back to back with the decoder's state carried between calls (schema 3), or
overlapping (schema 2); `generate(..., on_chunk=f)` hands each chunk to `f` as it is ready.

A .zip bundle is unpacked into a temporary folder that the pipeline owns: use it as a context manager
(`with BundlePipeline.open(p) as bp:`) or call `bp.close()` to remove that folder (see `edgegen.bundle`).

Non-finite values stop a generation at the stage that made them: the text encoder's outputs and every DiT step's
velocity are checked here, the decoded audio in `collect_audio`, so an error names the artifact (and step).

Audio-to-audio (`GenerateRequest(..., init_audio=(sr, audio), init_noise_level=S)`) needs a bundle exported with
`--audio-to-audio`: its encoder artifact is loaded for that stage only and released before sampling, and the
sampling follows `Pipeline.generate` (same VAE noise for the same seed, same truncated schedule).

`BundlePipeline.open(path, low_memory=True)` keeps no artifact resident: `generate` loads each one when its
stage starts and drops it when the stage ends, so peak memory is the largest stage's, not the sum of all three
(a full-size LiteRT int8 bundle: see benchmarks/JOURNAL.md). Loading is then part of every generation's time.

Everything here is numpy: generating from a LiteRT bundle never loads torch (about 230 MB of a process' memory;
audio-to-audio's resampler and ExecuTorch's runtime load it). LiteRT artifacts load through XNNPACK's weight cache
(`edgegen.weight_cache`; `open(..., weight_cache=WeightCache.off())` packs in memory instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgegen.bundle import NO_ENCODER, Bundle, init_audio_shape, open_bundle
from edgegen.errors import EdgegenError
from edgegen.common import COMPONENTS, ENCODER, Timings, check_finite, check_seconds, collect_audio, num_samples
from edgegen.runtime import Artifact, load_artifacts, release_memory
from edgegen.request import GenerateRequest, Plan, plan
from edgegen.sampler import pingpong, schedule, start_from_init
from edgegen.tokenizer import Tokenizer
from edgegen.weight_cache import WeightCache


class BundlePipeline:
    def __init__(self, bundle: Bundle, artifacts: dict[str, Artifact], load_s: float, *, threads: int | None = None,
                 weight_cache: WeightCache | None = None):
        self.bundle, self.artifacts, self.load_s, self.threads = bundle, artifacts, load_s, threads
        self.weight_cache = weight_cache or WeightCache.off()
        # per component: "hit", "built" or "off", as its last load went (`weight_cache_use` sums it up)
        self.cache_uses = {c: a.weight_cache for c, a in artifacts.items()}
        m = bundle.manifest
        missing = [c for c in COMPONENTS if c not in bundle.components]
        if missing:
            raise EdgegenError(f"{bundle.root}: bundle lacks {', '.join(missing)}; export all three components to run it")
        tok = m.tokenizer
        self.tokenizer = Tokenizer(bundle.tokenizer_path, max_length=tok.max_length, eos_id=tok.eos_id,
                                   pad_id=tok.pad_id)
        self.sample_rate, self.max_seconds = m.sample_rate, m.max_seconds
        x = m.artifacts["dit"].input("x")
        if x is None or len(x.shape) != 3:
            raise EdgegenError(f"{bundle.root}: the dit artifact declares no [1, 64, T] input named x; re-export it")
        self.latent_shape = tuple(x.shape[1:])  # (64, T)
        self.stream = m.decoder_stream  # None: the decoder takes the whole sequence

    @classmethod
    def open(cls, path: Path, *, threads: int | None = None, low_memory: bool = False,
             audio_to_audio: bool = False, weight_cache: WeightCache | None = None) -> "BundlePipeline":
        """Open a bundle; the three artifacts are loaded now unless `low_memory` (then each stage loads its own);
        an encoder (audio-to-audio) is loaded only for the generations that use it. `audio_to_audio`: refuse a
        bundle without an encoder before loading anything. `weight_cache`: LiteRT's XNNPACK weight cache (None:
        off; `WeightCache.resolve(None)`: the default folder, as `edgegen run` and `bench` use)."""
        start = time.perf_counter()
        bundle = open_bundle(path)
        try:
            if audio_to_audio and ENCODER not in bundle.components:
                raise EdgegenError(NO_ENCODER.format(root=bundle.root))
            threads = threads or bundle.manifest.target.threads
            arts = {} if low_memory else load_artifacts(bundle, threads=threads, components=COMPONENTS,
                                                        weight_cache=weight_cache)
            return cls(bundle, arts, time.perf_counter() - start, threads=threads, weight_cache=weight_cache)
        except BaseException:
            bundle.close()
            raise

    def close(self) -> None:
        """Remove the bundle's unpacked copy, if it came from a .zip (loaded artifacts stay usable)."""
        self.bundle.close()

    def __enter__(self) -> "BundlePipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stream_refusal(self) -> str:
        """Why `run --stream` cannot stream this whole-sequence bundle, and whether a re-export would help.

        A schema-1 manifest does not describe the decoder, so this assumes SAO-small's Oobleck decoder (random:tiny
        has the same); `export --decoder-window auto` streams only a sequence longer than
        `streaming.default_stateful_window`, so a re-export is suggested only then."""
        from edgegen.components.oobleck import OOBLECK_CONFIGS
        from edgegen.streaming import default_stateful_window

        frames = self.bundle.manifest.latent_length
        window = default_stateful_window(OOBLECK_CONFIGS["sao-small"], length=frames)
        if frames > window:
            return ("its decoder takes the whole sequence, so there is nothing to stream; "
                    f"re-export with `edgegen export --decoder-window auto` (windows of {window} of its {frames} "
                    "latent frames) or run without --stream")
        return (f"its decoder takes the whole {frames}-frame latent sequence "
                f"({self.max_seconds:.2f} s), too short to stream (a streamed decoder needs more than {window} "
                "frames); run without --stream")

    @contextmanager
    def resident(self, component: str):
        """`component`'s artifact loaded for the duration of the block (already resident: nothing to do)."""
        if component in self.artifacts:
            yield self.artifacts[component]
            return
        self.artifacts.update(load_artifacts(self.bundle, threads=self.threads, components=(component,),
                                             weight_cache=self.weight_cache))
        self.cache_uses[component] = self.artifacts[component].weight_cache
        try:
            yield self.artifacts[component]
        finally:
            del self.artifacts[component]
            release_memory()

    def _artifact(self, component: str) -> Artifact:
        if component not in self.artifacts:
            raise EdgegenError(f"the {component} artifact is not loaded (the bundle was opened with low_memory); "
                               f"call it inside `with bundle_pipeline.resident({component!r}):`")
        return self.artifacts[component]

    @property
    def weight_cache_use(self) -> str:
        """"built" when any artifact packed into a new cache file, else "hit" when any mapped one, else "off"."""
        uses = set(self.cache_uses.values())
        return "built" if "built" in uses else "hit" if "hit" in uses else "off"

    @property
    def backend_label(self) -> str:
        m = self.bundle.manifest
        return f"{m.backend} ({m.runtime_version}), recipe {m.recipe.name}"

    @property
    def steps(self) -> int:
        return self.bundle.manifest.sampler.steps

    def schedule(self, steps: int | None = None, init_noise_level: float = 1.0) -> np.ndarray:
        s = self.bundle.manifest.sampler
        return schedule(steps or s.steps, logsnr_max=s.logsnr_max, logsnr_min=s.logsnr_min,
                        init_noise_level=init_noise_level)

    @property
    def audio_to_audio(self) -> bool:
        return ENCODER in self.bundle.components

    def encode_audio(self, prepared, vae_noise) -> np.ndarray:
        """Init latents [1, 64, T] from prepared audio [1, 2, N]: the encoder artifact's mean + std * vae_noise."""
        mean, std = self._artifact(ENCODER)(audio=prepared)
        check_finite(mean, "the encoder artifact's latent_mean output")
        check_finite(std, "the encoder artifact's latent_std output")
        return mean + std * _numpy(vae_noise)

    def init_latents(self, init_audio: tuple[int, np.ndarray], vae_noise) -> np.ndarray:
        """`init_audio` prepared to the encoder's input (rate, channels, length) and encoded, encoder resident only
        for this call. A bundle without an encoder is one error naming the export flag."""
        from edgegen.init_audio import prepare_init_audio

        _, channels, length = init_audio_shape(self.bundle.manifest, self.bundle.root)
        prepared, _ = prepare_init_audio(*init_audio, sample_rate=self.sample_rate, length=length, channels=channels)
        with self.resident(ENCODER):
            return self.encode_audio(prepared, vae_noise)

    def check_seconds(self, seconds_total: float) -> None:
        check_seconds(seconds_total, max_seconds=self.max_seconds, sample_rate=self.sample_rate, owner="this bundle")

    def encode_text(self, prompt: str, seconds_total: float) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.tokenizer.encode([prompt])
        return self._artifact("text_encoder")(token_ids=ids, attention_mask=mask,
                                              seconds_total=np.array([seconds_total], np.float32))

    def velocity(self, x, t, cross, glob) -> np.ndarray:
        return self._artifact("dit")(x=x, t=t, cross_attn_cond=cross, global_cond=glob)[0]

    def decode_chunks(self, latents, samples: int | None = None) -> Iterator[np.ndarray]:
        """Audio [1, 2, n_i] chunks (numpy) for `latents` [1, 64, T] (its first `samples`, if given): one chunk from
        a whole-sequence decoder, or one per window from a streamed one."""
        latents = _numpy(latents)
        if self.stream is None:
            yield self._artifact("decoder")(latents=latents)[0][:, :, :samples]
            return
        s = self.stream
        if s.stateful:
            from edgegen.streaming import decode_stateful

            def step(x, position, state):
                audio, next_state = self._artifact("decoder")(latents=x, position=position, state=state)
                return audio, next_state

            yield from decode_stateful(step, latents, window=s.window, hop=s.hop, delay=s.delay,
                                       state_size=s.state_size, samples=samples)
            return
        from edgegen.streaming import decode_stream

        yield from decode_stream(lambda x: self._artifact("decoder")(latents=x)[0], latents, window=s.window,
                                 overlap=s.overlap, hop=s.hop, samples=samples)

    def decoded_latent_frames(self, samples: int) -> int:
        """Latent frames the decoder runs on for the first `samples` output samples (zero frames past the sequence
        and a window's padding included): the whole sequence, the overlapped windows, or the stateful calls."""
        from edgegen.streaming import frames_to_decode, plan_windows, stateful_calls

        s, T = self.stream, self.latent_shape[1]
        if s is None:
            return T
        if s.stateful:
            return s.window * stateful_calls(min(samples, T * s.hop), window=s.window, hop=s.hop, delay=s.delay)
        n = frames_to_decode(samples, length=T, window=s.window, overlap=s.overlap, hop=s.hop)
        return sum(w.end - w.start for w in plan_windows(n, window=s.window, overlap=s.overlap))

    def decode(self, latents) -> np.ndarray:
        return np.concatenate(list(self.decode_chunks(latents)), axis=-1)

    def plan(self, request: GenerateRequest) -> Plan:
        """`request` checked against this bundle (`edgegen.request.plan`): its steps, noise, schedule and tokens.
        The bundle's DiT runs one branch: a cfg_scale other than 1 is refused."""
        if request.cfg_scale != 1.0:
            raise EdgegenError(f"cfg_scale {request.cfg_scale}: a bundle's DiT runs without classifier-free "
                               "guidance; give 1 (or generate with the PyTorch reference)")
        return plan(request, tokenizer=self.tokenizer, max_seconds=self.max_seconds, sample_rate=self.sample_rate,
                    latent_shape=self.latent_shape, steps=self.steps, schedule=self.schedule, owner="this bundle")

    def generate(self, request: GenerateRequest, *, on_step: Callable[[int, np.ndarray], None] | None = None,
                 timings: Timings | None = None, on_chunk: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Audio np.float32 [2, num_samples(request.seconds, sample_rate)] for one `GenerateRequest`, as
        `Pipeline.generate` makes it (same noise, schedule and audio-to-audio steps) with the bundle's artifacts."""
        p = self.plan(request)
        noise = p.noise
        timings = timings if timings is not None else Timings()
        start = clock = time.perf_counter()
        if request.init_audio is not None:
            noise = start_from_init(noise, self.init_latents(request.init_audio, p.vae_noise), p.level)
            timings.stages["encoder"] = time.perf_counter() - clock  # its load and release included
            clock = time.perf_counter()
        with self.resident("text_encoder"):
            cross, glob = self.encode_text(request.prompt, request.seconds)
        check_finite(cross, "the text_encoder artifact's cross_attn_cond output")
        check_finite(glob, "the text_encoder artifact's global_cond output")
        timings.stages["text_encoder"] = time.perf_counter() - clock

        steps = p.steps
        step = iter(range(1, steps + 1))

        def velocity(x, t):
            start = time.perf_counter()
            v = self.velocity(x, t, cross, glob)
            timings.dit_steps.append(time.perf_counter() - start)
            check_finite(v, f"the dit artifact's output at step {next(step)} of {steps}")
            return v

        clock = time.perf_counter()
        with self.resident("dit"):
            latents = pingpong(velocity, noise, p.sigmas, on_step=on_step)
        timings.stages["dit"] = time.perf_counter() - clock  # with low_memory: its load and release included
        clock = time.perf_counter()
        with self.resident("decoder"):
            chunks = self.decode_chunks(latents, samples=num_samples(request.seconds, self.sample_rate))
            wav = collect_audio(chunks, timings=timings, start=start, on_chunk=on_chunk)
        timings.stages["decoder"] = time.perf_counter() - clock  # as for the DiT: a low_memory load counts
        return wav


def _numpy(x) -> np.ndarray:
    """A torch tensor (from a caller that has torch) or any array, as numpy float32."""
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
