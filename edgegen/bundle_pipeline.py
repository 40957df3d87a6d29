"""Generate audio from a bundle: the bundle's tokenizer and runtime, the shared ping-pong sampler.

    bp = BundlePipeline.open("bundle_dir", threads=2)
    wav = bp.generate("a dog barking", seconds_total=5.0, seed=0)        # np.float32 [2, n]

Same contract as `Pipeline.generate` (and the same noise for the same seed), so a bundle and the
PyTorch reference can be compared sample for sample. A bundle whose manifest has `decoder_stream` decodes in
overlapping windows (`edgegen.streaming`); `generate(..., on_chunk=f)` hands each chunk to `f` as it is ready.

`BundlePipeline.open(path, low_memory=True)` keeps no artifact resident: `generate` loads each one when its
stage starts and drops it when the stage ends, so peak memory is the largest stage's, not the sum of all three
(a full-size LiteRT int8 bundle: see benchmarks/RESULTS.md). Loading is then part of every generation's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from edgegen.bundle import Bundle, open_bundle
from edgegen.errors import EdgegenError
from edgegen.pipeline import Timings, collect_audio
from edgegen.runtime import Artifact, load_artifacts, release_memory
from edgegen.sampler import chain_noise, pingpong, schedule
from edgegen.tokenizer import Tokenizer


class BundlePipeline:
    def __init__(self, bundle: Bundle, artifacts: dict[str, Artifact], load_s: float, *, threads: int | None = None):
        self.bundle, self.artifacts, self.load_s, self.threads = bundle, artifacts, load_s, threads
        m = bundle.manifest
        missing = [c for c in ("text_encoder", "dit", "decoder") if c not in bundle.components]
        if missing:
            raise EdgegenError(f"{bundle.root}: bundle lacks {', '.join(missing)}; export all three components to run it")
        tok = m["tokenizer"]
        self.tokenizer = Tokenizer(bundle.tokenizer_path, max_length=tok["max_length"], eos_id=tok["eos_id"],
                                   pad_id=tok["pad_id"])
        self.sample_rate, self.max_seconds = m["sample_rate"], m["max_seconds"]
        self.latent_shape = tuple(m["artifacts"]["dit"]["inputs"][0]["shape"][1:])  # (64, T)
        self.stream = m.get("decoder_stream")  # None: the decoder takes the whole sequence

    @classmethod
    def open(cls, path: Path, *, threads: int | None = None, low_memory: bool = False) -> "BundlePipeline":
        """Open a bundle; all artifacts are loaded now unless `low_memory` (then each stage loads its own)."""
        start = time.perf_counter()
        bundle = open_bundle(path)
        threads = threads or bundle.manifest["target"].get("threads")
        arts = {} if low_memory else load_artifacts(bundle, threads=threads)
        return cls(bundle, arts, time.perf_counter() - start, threads=threads)

    @contextmanager
    def resident(self, component: str):
        """`component`'s artifact loaded for the duration of the block (already resident: nothing to do)."""
        if component in self.artifacts:
            yield self.artifacts[component]
            return
        self.artifacts.update(load_artifacts(self.bundle, threads=self.threads, components=(component,)))
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
    def backend_label(self) -> str:
        m = self.bundle.manifest
        return f"{m['backend']} ({m['runtime_version']}), recipe {m['recipe']['name']}"

    @property
    def steps(self) -> int:
        return self.bundle.manifest["sampler"]["steps"]

    def schedule(self, steps: int | None = None) -> np.ndarray:
        s = self.bundle.manifest["sampler"]
        return schedule(steps or s["steps"], logsnr_max=s["logsnr_max"], logsnr_min=s["logsnr_min"])

    def check_seconds(self, seconds_total: float) -> None:
        if not 0.0 < seconds_total <= self.max_seconds + 1e-6:
            raise EdgegenError(f"seconds_total={seconds_total} is out of range: this bundle makes (0, "
                               f"{self.max_seconds:.2f}] seconds")

    def encode_text(self, prompt: str, seconds_total: float) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer.encode([prompt])
        return self._artifact("text_encoder")(token_ids=ids, attention_mask=mask,
                                              seconds_total=np.array([seconds_total], np.float32))

    def velocity(self, x, t, cross, glob) -> torch.Tensor:
        return self._artifact("dit")(x=x, t=t, cross_attn_cond=cross, global_cond=glob)[0]

    def decode_chunks(self, latents: torch.Tensor, samples: int | None = None) -> Iterator[torch.Tensor]:
        """Audio [1, 2, n_i] chunks for `latents` [1, 64, T] (its first `samples`, if given): one chunk from a
        whole-sequence decoder, or one per window from a streamed one."""
        decoder = lambda x: self._artifact("decoder")(latents=x)[0]  # noqa: E731
        if self.stream is None:
            yield decoder(latents)[:, :, :samples]
            return
        from edgegen.streaming import decode_stream

        yield from decode_stream(decoder, latents, window=self.stream["window"], overlap=self.stream["overlap"],
                                 hop=self.stream["hop"], samples=samples)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(self.decode_chunks(latents)), dim=-1)

    def generate(self, prompt: str, *, seconds_total: float, steps: int | None = None, seed: int = 0,
                 noise: np.ndarray | None = None, on_step: Callable[[int, torch.Tensor], None] | None = None,
                 timings: Timings | None = None, on_chunk: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        self.check_seconds(seconds_total)
        steps = steps or self.steps
        noise = chain_noise(noise, seed=seed, steps=steps, channels=self.latent_shape[0],
                            length=self.latent_shape[1], owner="this bundle")
        timings = timings if timings is not None else Timings()
        start = clock = time.perf_counter()
        with self.resident("text_encoder"):
            cross, glob = self.encode_text(prompt, seconds_total)
        timings.stages["text_encoder"] = time.perf_counter() - clock

        def velocity(x, t):
            start = time.perf_counter()
            v = self.velocity(x, t, cross, glob)
            timings.dit_steps.append(time.perf_counter() - start)
            return v

        clock = time.perf_counter()
        with self.resident("dit"):
            latents = pingpong(velocity, noise, self.schedule(steps), on_step=on_step)
        timings.stages["dit"] = time.perf_counter() - clock  # with low_memory: its load and release included
        clock = time.perf_counter()
        with self.resident("decoder"):
            chunks = self.decode_chunks(latents, samples=int(seconds_total * self.sample_rate))
            wav = collect_audio(chunks, timings=timings, start=start, on_chunk=on_chunk)
        timings.stages["decoder"] = time.perf_counter() - clock  # as for the DiT: a low_memory load counts
        return wav
