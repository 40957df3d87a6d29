"""The reference text-to-audio pipeline: tokenizer, text encoder, DiT, Oobleck decoder, ping-pong sampler.

    pipe = load_pipeline("path/to/model_dir", t5="path/to/t5-base")   # or load_pipeline("random:tiny")
    ids, mask = pipe.tokenize(["a dog barking"])                       # LongTensor [B, 64] each
    cross, glob = pipe.text_encoder(ids, mask, seconds_total)          # [B, 65, C], [B, C]
    v = pipe.dit(x, t, cross, glob)                                    # [B, 64, T] -> [B, 64, T]
    audio = pipe.decoder(latents)                                      # [B, 64, T] -> [B, 2, T * 2048]
    wav = pipe.generate(GenerateRequest("prompt", seconds=10.0, steps=8, seed=0))   # np.float32 [2, n]

Everything runs in fp32 on the CPU whatever the config's `model_half` says; T5's weights are rounded to fp16 first
(`t5_precision="fp16"`, as upstream loads them) unless `t5_precision="fp32"`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterator

import numpy as np
import torch

from edgegen import checkpoint as ckpt
from edgegen.common import (Timings, builtin_names, check_seconds, collect_audio, hf_hub_cache, num_samples,
                            sha256_file)
from edgegen.components.conditioners import NumberConditioner, TextEncoder
from edgegen.components.dit import DiT
from edgegen.components.oobleck import OobleckConfig, OobleckDecoder, OobleckEncoder, vae_bottleneck
from edgegen.components.t5_encoder import T5Config, T5Encoder, check_t5_precision
from edgegen.config import ModelConfig
from edgegen.errors import EdgegenError
from edgegen.request import GenerateRequest, Plan, plan
from edgegen.sampler import pingpong, schedule, start_from_init
from edgegen.tokenizer import Tokenizer

ASSETS = Path(__file__).parent / "assets"

# official checkpoint prefix -> Pipeline attribute
PREFIXES = {
    "model.model.": "dit",
    "pretransform.model.decoder.": "decoder",
    "pretransform.model.encoder.": "encoder",
    "conditioner.conditioners.seconds_total.": "seconds",
    "conditioner.conditioners.prompt.proj_out.": "proj_out",
}


@dataclass
class Source:
    """Where a pipeline came from: recorded in bundle manifests."""
    model: str
    config_sha256: str
    checkpoint_sha256: str
    t5: str
    t5_precision: str = "fp16"  # T5 weights rounded through float16 as upstream loads them, or "fp32" as stored


class Pipeline:
    steps = 8  # sampling steps when a request names none (SAO-small's)

    def __init__(self, config: ModelConfig, t5_config: T5Config, tokenizer: Tokenizer, source: Source):
        self.config, self.tokenizer, self.source = config, tokenizer, source
        t5 = T5Encoder(t5_config, max_length=config.max_length)
        seconds = NumberConditioner(features=config.cond_dim, min_val=config.seconds_min, max_val=config.seconds_max)
        self.text_encoder = TextEncoder(t5, seconds, cond_dim=config.cond_dim)
        self.dit = DiT(config.dit)
        self.decoder = OobleckDecoder(config.vae)
        self.decoder.scale = config.vae_scale
        enc_cfg = OobleckConfig(channels=config.vae_encoder_channels, c_mults=config.vae.c_mults,
                                strides=config.vae.strides, latent_dim=config.vae.latent_dim)
        self.encoder = OobleckEncoder(enc_cfg)
        for m in self.modules().values():
            m.eval().requires_grad_(False)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The components still held (`release` drops one)."""
        parts = {"text_encoder": self.text_encoder, "dit": self.dit, "decoder": self.decoder, "encoder": self.encoder}
        return {name: m for name, m in parts.items() if m is not None}

    def release(self, component: str) -> None:
        """Free a component this process will not use: `edgegen export` frees the VAE encoder (312 MB at full
        size) unless it exports it. Using it afterwards raises EdgegenError."""
        if component != "encoder":  # the others are every generation's; only audio-to-audio needs the encoder
            raise EdgegenError(f"only the encoder can be released, not {component!r}")
        self.encoder = None

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def latent_length(self) -> int:
        return self.config.latent_length

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(64, T): one latent sequence, the chain noise's shape after its steps."""
        return self.config.dit.io_channels, self.config.latent_length

    @property
    def max_seconds(self) -> float:
        return self.config.max_seconds

    # --- the three stages ----------------------------------------------------------------------------

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer.encode(list(prompts))
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def encode_audio(self, audio: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """audio [B, 2, N] -> latents [B, 64, N / hop]: the VAE mean, or a sample when `noise` is given."""
        if self.encoder is None:
            raise EdgegenError("this pipeline's VAE encoder was released; load the model again for audio-to-audio")
        with torch.no_grad():
            return vae_bottleneck(self.encoder(audio.float()), noise)

    def decode_stream(self, latents: torch.Tensor, *, window: int | None = None, overlap: int | None = None,
                      samples: int | None = None) -> Iterator[torch.Tensor]:
        """Yield audio chunks [1, 2, n_i] that concatenate to `decoder(latents)` (its first `samples`, if given) up
        to float rounding, with a fraction of its peak memory. By default the stateful stream (schema 3): windows
        of `window` latent frames back to back, each frame decoded once (`streaming.decode_stateful`); with
        `overlap`, overlapping windows of the plain decoder (schema 2, `streaming.decode_stream`)."""
        from edgegen.streaming import decode_stateful, decode_stream, default_stateful_window, default_window

        if overlap is not None:
            def decoder(x: torch.Tensor) -> torch.Tensor:
                # no_grad per call, never held across a yield: a `with torch.no_grad()` around the yields would
                # leave a consumer that stops early (an error in a later chunk) without grad until it is collected
                with torch.no_grad():
                    return self.decoder(x)

            w = window or default_window(overlap, length=self.latent_length)[0]
            yield from decode_stream(decoder, latents, window=w, overlap=overlap, hop=self.config.vae.hop,
                                     samples=samples)
            return
        sd = self.stateful_decoder(window or default_stateful_window(self.decoder, length=self.latent_length))

        def step(x, position, state):
            with torch.no_grad():  # per call, as above
                return sd(x, position, state)

        yield from decode_stateful(step, latents, window=sd.window, hop=sd.hop, delay=sd.delay,
                                   state_size=sd.state_size, samples=samples)

    def stateful_decoder(self, window: int):
        """This pipeline's decoder as a StatefulDecoder of `window` latent frames (built once per window; it holds
        its own copy of the weights, refolded)."""
        from edgegen.components.stateful_decoder import StatefulDecoder

        cache = self.__dict__.setdefault("_stateful", {})
        if window not in cache:
            cache.clear()  # one at a time: each holds a copy of the decoder's weights
            cache[window] = StatefulDecoder(self.decoder, window=window).eval()
        return cache[window]

    def check_seconds(self, seconds_total: float) -> None:
        check_seconds(seconds_total, max_seconds=self.max_seconds, sample_rate=self.sample_rate, owner="this model")

    def plan(self, request: GenerateRequest) -> Plan:
        """`request` checked against this model (`edgegen.request.plan`): its steps, noise, schedule and tokens."""
        return plan(request, tokenizer=self.tokenizer, max_seconds=self.max_seconds, sample_rate=self.sample_rate,
                    latent_shape=self.latent_shape, steps=self.steps, owner="this model",
                    schedule=lambda steps, level: schedule(steps, init_noise_level=level))

    @torch.no_grad()
    def generate(self, request: GenerateRequest, *, on_step: Callable[[int, torch.Tensor], None] | None = None,
                 timings: Timings | None = None, stream: bool = False,
                 on_chunk: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Audio np.float32 [2, num_samples(request.seconds, sample_rate)] for one `GenerateRequest`, checked by
        `plan`. `stream=True` decodes in windows (`decode_stream`), handing each chunk to `on_chunk` as soon as it
        is ready; `on_step(i, x)` sees the chain after each step, `timings` collects the stage times.

        Audio-to-audio: `request.init_audio=(sample_rate, [channels, n])` is prepared (`edgegen.init_audio`),
        encoded by the VAE encoder, sampled through the VAE bottleneck with `vae_noise` [1, 64, T] (default: slice
        `steps` of gaussian_noise(seed, (steps + 1, 64, T)), whose first `steps` slices are the chain noise), and
        sampling starts from (1 - S) * init_latents + S * noise[0] at S = `init_noise_level` on the truncated
        schedule, as upstream's generate_diffusion_cond does for rectified-flow models. S = 1 is text-to-audio,
        sample for sample. `request.sigmas` ([steps + 1] noise levels from S to 0) replaces the schedule
        (`edgegen.sampler.schedule`), e.g. to reproduce another sampler's or a bundle's."""
        from edgegen.init_audio import prepare_init_audio

        p = self.plan(request)
        noise = torch.from_numpy(p.noise)
        timings = timings if timings is not None else Timings()
        start = clock = time.perf_counter()
        if request.init_audio is not None:
            prepared, _ = prepare_init_audio(*request.init_audio, sample_rate=self.sample_rate,
                                             length=self.latent_length * self.config.vae.hop)
            noise = start_from_init(noise, self.encode_audio(prepared, torch.from_numpy(p.vae_noise)), p.level)
            timings.stages["encoder"] = time.perf_counter() - clock
            clock = time.perf_counter()
        ids, mask = self.tokenize([request.prompt])
        cross, glob = self.text_encoder(ids, mask, torch.tensor([request.seconds], dtype=torch.float32))
        timings.stages["text_encoder"] = time.perf_counter() - clock
        cfg_scale = request.cfg_scale

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            if cfg_scale == 1.0:
                v = self.dit(x, t, cross, glob)
            else:  # batched unconditional branch with zeroed cross tokens
                both = self.dit(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cross, torch.zeros_like(cross)]),
                                torch.cat([glob, glob]))
                cond, uncond = both.chunk(2)
                v = uncond + (cond - uncond) * cfg_scale
            timings.dit_steps.append(time.perf_counter() - start)
            return v

        latents = pingpong(velocity, noise, p.sigmas, on_step=on_step)
        timings.stages["dit"] = sum(timings.dit_steps)
        n = num_samples(request.seconds, self.sample_rate)
        chunks = self.decode_stream(latents, samples=n) if stream else (self.decoder(x)[:, :, :n] for x in [latents])
        return collect_audio(chunks, timings=timings, start=start, on_chunk=on_chunk)

    # --- (de)serialisation ---------------------------------------------------------------------------

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors of the official layout (weight-normed convs as weight_g / weight_v)."""
        out = {}
        for prefix, attr in PREFIXES.items():
            module = self._part(attr)
            if module is None:
                continue
            wn = ckpt.weight_norm_keys(module) if prefix.startswith("pretransform.") else set()
            for k, v in module.state_dict().items():
                if k in wn:  # w = g * v / ||v|| with g = ||w|| and v = w is an exact round trip
                    stem = k[: -len("weight")]
                    out[prefix + stem + "weight_g"] = torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True).clone()
                    out[prefix + stem + "weight_v"] = v.clone()
                else:
                    out[prefix + k] = v.clone()
        return out

    def _part(self, attr: str) -> torch.nn.Module | None:
        if attr == "seconds":
            return self.text_encoder.seconds_total
        if attr == "proj_out":
            p = self.text_encoder.proj_out
            return p if isinstance(p, torch.nn.Linear) else None
        return getattr(self, attr)

    def load_official(self, state: dict[str, torch.Tensor], *, source: str) -> None:
        expected = {}
        for prefix, attr in PREFIXES.items():
            if (module := self._part(attr)) is not None:
                expected.update(ckpt.official_shapes(module, prefix))
        ckpt.check_keys(expected, state, source=source)
        state = ckpt.fold_weight_norm(state)
        for prefix, attr in PREFIXES.items():
            if (module := self._part(attr)) is not None:
                part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                ckpt.strict_assign(module, part, source=source)
        self.dit.transformer.rotary_pos_emb.refresh()

    def save_official(self, out_dir: Path, *, raw_config: dict) -> None:
        """Write model_config.json + model.safetensors in the official layout."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model_config.json").write_text(json.dumps(raw_config, indent=2) + "\n")
        save_file({k: v.contiguous() for k, v in self.official_state_dict().items()}, str(out_dir / "model.safetensors"))


def _load_random(name: str, *, seed: int = 0, t5_precision: str = "fp16") -> Pipeline:
    from edgegen.presets import PRESETS, condition_decoder_, random_checkpoint_id, random_config_sha256, randomize_

    if name not in PRESETS:
        raise EdgegenError(f"unknown built-in model random:{name}; choose one of "
                           + ", ".join(f"random:{k}" for k in PRESETS))
    raw, t5_cfg = PRESETS[name]
    config = ModelConfig.from_dict(raw)
    source = Source(model=f"random:{name}", config_sha256=random_config_sha256(name),
                    checkpoint_sha256=random_checkpoint_id(seed), t5=f"random:{name}", t5_precision=t5_precision)
    tok = Tokenizer(ASSETS / "spiece.model", max_length=config.max_length)
    pipe = Pipeline(config, t5_cfg, tok, source)
    for i, module in enumerate(pipe.modules().values()):
        randomize_(module, seed=seed * 10 + i)
    condition_decoder_(pipe.decoder, seed=seed * 10 + 9)  # conditioned like a trained decoder (int8 figures)
    pipe.text_encoder.t5.round_weights_(t5_precision, source=f"random:{name}")
    pipe.dit.transformer.rotary_pos_emb.refresh()
    pipe.raw_config = raw
    return pipe


def load_pipeline(model: str | Path, t5: str | Path | None = None, *, t5_precision: str = "fp16") -> Pipeline:
    """A pipeline from a model folder in the official layout, or a built-in `random:tiny` / `random:sao-small`.
    `t5`: a T5 folder or a Hugging Face hub cache holding one (`checkpoint.find_t5`). `t5_precision`: "fp16"
    rounds the T5 weights through float16 as upstream does (compute stays fp32), "fp32" keeps them as stored."""
    check_t5_precision(t5_precision)
    if str(model).startswith("random:"):
        return _load_random(str(model)[len("random:"):], t5_precision=t5_precision)
    model_dir = ckpt.find_model(model, hf_hub_cache(), builtins=builtin_names())
    cfg_path = model_dir / "model_config.json"
    if not cfg_path.is_file():
        raise EdgegenError(f"{model_dir}: model_config.json not found")
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgegenError(f"{cfg_path} is not valid JSON ({exc})") from None
    config = ModelConfig.from_dict(raw, source=str(cfg_path))
    weights = ckpt.model_weights_file(model_dir)
    t5_dir = ckpt.find_t5(t5, model_name=config.t5_model_name)
    t5_cfg = T5Config.from_json(t5_dir / "config.json")
    source = Source(model=str(model_dir.resolve()), config_sha256=sha256_file(cfg_path),
                    checkpoint_sha256=sha256_file(weights), t5=str(t5_dir.resolve()), t5_precision=t5_precision)
    tok = Tokenizer(t5_dir / "spiece.model", max_length=config.max_length)
    pipe = Pipeline(config, t5_cfg, tok, source)
    state = ckpt.read_state_dict(weights)
    ckpt.check_t5_width(state, d_model=t5_cfg.d_model, cond_dim=config.cond_dim, t5_config=t5_dir / "config.json",
                        weights=weights, model_name=config.t5_model_name)
    pipe.load_official(state, source=str(weights))
    pipe.text_encoder.t5.load_hf_state_dict(ckpt.load_t5_state(t5_dir), source=str(t5_dir))
    pipe.text_encoder.t5.round_weights_(t5_precision, source=str(t5_dir))
    pipe.raw_config = raw
    return pipe
