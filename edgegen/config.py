"""`model_config.json` (the upstream stable-audio-tools schema) -> typed configs, refusing what edgegen can't run.

    ModelConfig.from_dict(json.load(...)) -> ModelConfig(dit=DiTConfig, vae=OobleckConfig, ...)

Only the SAO-small family is accepted: a DiT with prepended global conditioning and QK-LayerNorm, an
Oobleck VAE with a "vae" bottleneck, a T5 prompt conditioner and a `seconds_total` number conditioner.
Anything else is refused with the JSON path of the field that is out of family. Fields that only matter
for training (`training`, `distribution_shift_options`, `requires_grad`, `iterate_batch`, `chunked`) and
`model_half` (CPU inference always runs fp32) are read past deliberately.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgegen.components.dit import DiTConfig
from edgegen.components.oobleck import OobleckConfig
from edgegen.errors import EdgegenError


@dataclass(frozen=True)
class ModelConfig:
    dit: DiTConfig
    vae: OobleckConfig
    vae_encoder_channels: int  # "channels" of the encoder, which may differ from the decoder's
    vae_scale: float
    sample_rate: int
    sample_size: int
    cond_dim: int
    t5_model_name: str
    max_length: int
    seconds_min: float
    seconds_max: float
    diffusion_objective: str

    @property
    def latent_length(self) -> int:
        return self.sample_size // self.vae.hop

    @property
    def max_seconds(self) -> float:
        return self.latent_length * self.vae.hop / self.sample_rate

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        return _parse(raw)


def _refuse(path: str, value, expected) -> None:
    raise EdgegenError(f"model_config.json: unsupported {path}={value!r} (edgegen supports {expected}); "
                       "this config is outside the Stable Audio Open Small family")


def _get(d: dict, path: str):
    node = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise EdgegenError(f"model_config.json: missing required field {path}")
        node = node[part]
    return node


def _expect(d: dict, path: str, allowed, *, default=None) -> None:
    node = d
    parts = path.split(".")
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            node = default
            break
        node = node[part]
    if node not in allowed:
        _refuse(path, node, " or ".join(repr(a) for a in allowed))


def _parse(raw: dict) -> ModelConfig:
    _expect(raw, "model_type", ("diffusion_cond",))
    _expect(raw, "audio_channels", (2,), default=2)
    m = "model"
    _expect(raw, f"{m}.pretransform.type", ("autoencoder",))
    ae = _get(raw, f"{m}.pretransform.config")
    for part in ("encoder", "decoder"):
        _expect(ae, f"{part}.type", ("oobleck",))
        _expect(ae, f"{part}.config.use_snake", (True,), default=False)
        _expect(ae, f"{part}.config.antialias_activation", (False,), default=False)
        _expect(ae, f"{part}.config.use_nearest_upsample", (False,), default=False)
    _expect(ae, "decoder.config.final_tanh", (False,), default=True)
    _expect(ae, "bottleneck.type", ("vae",))
    dec, enc = ae["decoder"]["config"], ae["encoder"]["config"]
    if list(dec["c_mults"]) != list(enc["c_mults"]) or list(dec["strides"]) != list(enc["strides"]):
        _refuse("pretransform.config.decoder.c_mults/strides", (dec["c_mults"], dec["strides"]),
                "the encoder's c_mults and strides")
    if enc.get("latent_dim") != 2 * dec["latent_dim"]:
        _refuse("pretransform.config.encoder.config.latent_dim", enc.get("latent_dim"),
                "2 x the decoder latent_dim (a VAE bottleneck)")
    if dec.get("out_channels", 2) != 2 or enc.get("in_channels", 2) != 2:
        _refuse("pretransform.config.decoder.config.out_channels", dec.get("out_channels"), "2 (stereo)")
    vae = OobleckConfig(channels=dec["channels"], c_mults=tuple(dec["c_mults"]), strides=tuple(dec["strides"]),
                        latent_dim=dec["latent_dim"])
    if ae.get("downsampling_ratio", vae.hop) != vae.hop:
        _refuse("pretransform.config.downsampling_ratio", ae["downsampling_ratio"], f"prod(strides) = {vae.hop}")

    conds = {c["id"]: c for c in _get(raw, f"{m}.conditioning.configs")}
    if set(conds) != {"prompt", "seconds_total"}:
        _refuse("model.conditioning.configs[].id", sorted(conds), "exactly 'prompt' and 'seconds_total'")
    _expect(conds["prompt"], "type", ("t5",))
    _expect(conds["seconds_total"], "type", ("number",))
    diff = _get(raw, f"{m}.diffusion")
    _expect(diff, "type", ("dit",))
    _expect(diff, "diffusion_objective", ("rectified_flow", "rf_denoiser"))
    if list(diff.get("cross_attention_cond_ids", [])) != ["prompt", "seconds_total"]:
        _refuse("model.diffusion.cross_attention_cond_ids", diff.get("cross_attention_cond_ids"),
                "['prompt', 'seconds_total']")
    if list(diff.get("global_cond_ids", [])) != ["seconds_total"]:
        _refuse("model.diffusion.global_cond_ids", diff.get("global_cond_ids"), "['seconds_total']")
    for key in ("input_concat_ids", "prepend_cond_ids"):
        if diff.get(key):
            _refuse(f"model.diffusion.{key}", diff[key], "none")
    dc = diff["config"]
    for path, allowed, default in (
        ("transformer_type", ("continuous_transformer",), "x-transformers"),
        ("global_cond_type", ("prepend",), "prepend"),
        ("timestep_cond_type", ("global",), "global"),
        ("patch_size", (1,), 1),
        ("project_cond_tokens", (True,), True),
        ("project_global_cond", (True,), True),
        ("attn_kwargs.qk_norm", ("ln",), "none"),
        ("num_memory_tokens", (0,), 0),
        ("input_concat_dim", (0,), 0),
        ("prepend_cond_dim", (0,), 0),
    ):
        _expect(dc, path, allowed, default=default)
    io = dc.get("io_channels", 32)
    if io != dec["latent_dim"]:
        _refuse("model.diffusion.config.io_channels", io, f"the VAE latent_dim {dec['latent_dim']}")
    if dc["embed_dim"] % dc["num_heads"]:
        _refuse("model.diffusion.config.num_heads", dc["num_heads"], "a divisor of embed_dim")
    sample_size = _get(raw, "sample_size")
    if sample_size % vae.hop:
        _refuse("sample_size", sample_size, f"a multiple of the VAE hop {vae.hop}")
    dit = DiTConfig(io_channels=io, embed_dim=dc["embed_dim"], depth=dc["depth"], num_heads=dc["num_heads"],
                    cond_token_dim=dc["cond_token_dim"], global_cond_dim=dc.get("global_cond_dim", 0) or 0,
                    latent_length=sample_size // vae.hop)
    cond_dim = _get(raw, f"{m}.conditioning.cond_dim")
    if dit.cond_token_dim != cond_dim:
        _refuse("model.diffusion.config.cond_token_dim", dit.cond_token_dim, f"cond_dim {cond_dim}")
    if dit.global_cond_dim != cond_dim:
        _refuse("model.diffusion.config.global_cond_dim", dit.global_cond_dim, f"cond_dim {cond_dim}")
    prompt, secs = conds["prompt"].get("config", {}), conds["seconds_total"].get("config", {})
    return ModelConfig(
        dit=dit, vae=vae, vae_encoder_channels=enc["channels"],
        vae_scale=float(_get(raw, f"{m}.pretransform").get("scale", 1.0)),
        sample_rate=_get(raw, "sample_rate"), sample_size=sample_size, cond_dim=cond_dim,
        t5_model_name=prompt.get("t5_model_name", "t5-base"), max_length=prompt.get("max_length", 128),
        seconds_min=float(secs.get("min_val", 0)), seconds_max=float(secs.get("max_val", 1)),
        diffusion_objective=diff["diffusion_objective"],
    )
