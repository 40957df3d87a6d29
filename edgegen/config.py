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
from edgegen.schema import is_int, is_number


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
    def from_dict(cls, raw: dict, *, source: str = "model_config.json") -> "ModelConfig":
        """Validated against SCHEMA and the family rules; errors name `source` (the file), the field and the value."""
        _validate(raw, source)
        return _parse(raw, source)


def _refuse(src: str, path: str, value, expected) -> None:
    raise EdgegenError(f"{src}: unsupported {path}={value!r} (edgegen supports {expected}); "
                       "this config is outside the Stable Audio Open Small family")


def _get(src: str, d: dict, path: str):
    node = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise EdgegenError(f"{src}: missing required field {path}")
        node = node[part]
    return node


def _expect(src: str, d: dict, path: str, allowed, *, default=None) -> None:
    node = d
    parts = path.split(".")
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            node = default
            break
        node = node[part]
    if node not in allowed or isinstance(node, bool) != isinstance(allowed[0], bool):
        _refuse(src, path, node, " or ".join(repr(a) for a in allowed))


# The declared schema of the numeric fields: (JSON path, kind, lowest, highest, required). Bounds are the family's:
# SAO-small sits well inside them (noted per row), random:tiny and the upstream test fixture too; anything outside
# would build a model no SAO checkpoint fits, or fail much later with a less helpful message.
_AE, _DC = "model.pretransform.config", "model.diffusion.config"
SCHEMA: tuple[tuple[str, str, float, float, bool], ...] = (
    ("sample_rate", "int", 8000, 192000, True),                        # 44100
    ("sample_size", "int", 1, 1 << 24, True),                          # 524288 (256 latents x hop 2048)
    ("model.pretransform.scale", "number", 1e-6, 1e6, False),           # 1
    (f"{_AE}.downsampling_ratio", "int", 1, 1 << 16, False),          # 2048
    *((f"{_AE}.{part}.config.{key}", kind, lo, hi, True) for part in ("encoder", "decoder")
      for key, kind, lo, hi in (("channels", "int", 1, 1024),          # 128 (tiny 8, fixture 4)
                                ("c_mults", "ints", 1, 64),            # [1, 2, 4, 8, 16]
                                ("strides", "ints", 1, 64),            # [2, 4, 4, 8, 8]
                                ("latent_dim", "int", 1, 1024))),      # encoder 128, decoder 64
    (f"{_AE}.encoder.config.in_channels", "int", 1, 64, False),       # 2
    (f"{_AE}.decoder.config.out_channels", "int", 1, 64, False),      # 2
    ("model.conditioning.cond_dim", "int", 1, 4096, True),             # 768 (t5-base)
    (f"{_DC}.io_channels", "int", 1, 1024, False),                    # 64
    (f"{_DC}.embed_dim", "int", 16, 4096, True),                       # 1024 (SAO 1.0: 1536)
    (f"{_DC}.depth", "int", 1, 64, True),                              # 16 (SAO 1.0: 24)
    (f"{_DC}.num_heads", "int", 1, 64, True),                          # 8
    (f"{_DC}.cond_token_dim", "int", 1, 4096, True),                   # 768
    (f"{_DC}.global_cond_dim", "int", 0, 4096, False),                 # 768
)
_KINDS = {"int": "an integer", "number": "a finite number", "ints": "a list of 1 to 8 integers"}


def _invalid(src: str, path: str, value, expected: str) -> None:
    raise EdgegenError(f"{src}: invalid {path}={value!r}: expected {expected}")


def _check_value(src: str, path: str, value, kind: str, lo: float, hi: float) -> None:
    num = lambda x: f"{x:g}" if x != int(x) else str(int(x))  # noqa: E731
    expected = f"{_KINDS[kind]} in {num(lo)}..{num(hi)}"
    if kind == "ints":
        ok = isinstance(value, list) and 1 <= len(value) <= 8 and all(is_int(v) and lo <= v <= hi for v in value)
    else:
        ok = (is_int(value) if kind == "int" else is_number(value)) and lo <= value <= hi
    if not ok:
        _invalid(src, path, value, expected)


def _validate(raw, src: str) -> None:
    """Every field of SCHEMA (and the conditioners' own) has its type and lies in the family's range."""
    if not isinstance(raw, dict):
        raise EdgegenError(f"{src}: expected a JSON object, got {type(raw).__name__}")
    _expect(src, raw, "model_type", ("diffusion_cond",))  # another kind of model: say so before its fields
    for path, kind, lo, hi, required in SCHEMA:
        node, found, parts = raw, True, path.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict):
                _invalid(src, ".".join(parts[:i]), node, "a JSON object")
            if part not in node:
                found = False
                break
            node = node[part]
        if not found:
            if required:
                raise EdgegenError(f"{src}: missing required field {path}")
            continue
        _check_value(src, path, node, kind, lo, hi)
    configs = _get(src, raw, "model.conditioning.configs")
    if not isinstance(configs, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in configs):
        _invalid(src, "model.conditioning.configs", configs, "a list of objects with an \"id\"")
    for c in configs:
        where = f"model.conditioning.configs[{c['id']}].config"
        conf = c.get("config", {})
        if not isinstance(conf, dict):
            _invalid(src, where, conf, "a JSON object")
        if c["id"] == "prompt":
            if "max_length" in conf:
                _check_value(src, f"{where}.max_length", conf["max_length"], "int", 1, 512)  # 64
            if not isinstance(conf.get("t5_model_name", ""), str):
                _invalid(src, f"{where}.t5_model_name", conf["t5_model_name"], "a string")
        elif c["id"] == "seconds_total":  # seconds_total is scaled into [min_val, max_val]: SAO-small 0..256
            lo, hi = conf.get("min_val", 0), conf.get("max_val", 1)
            _check_value(src, f"{where}.min_val", lo, "number", 0, 3600)
            if not (is_number(hi) and lo < hi <= 3600):
                _invalid(src, f"{where}.max_val", hi, f"a finite number above min_val {lo!r} and at most 3600")


def _parse(raw: dict, src: str) -> ModelConfig:
    _expect(src, raw, "model_type", ("diffusion_cond",))
    _expect(src, raw, "audio_channels", (2,), default=2)
    m = "model"
    _expect(src, raw, f"{m}.pretransform.type", ("autoencoder",))
    ae = _get(src, raw, f"{m}.pretransform.config")
    for part in ("encoder", "decoder"):
        _expect(src, ae, f"{part}.type", ("oobleck",))
        _expect(src, ae, f"{part}.config.use_snake", (True,), default=False)
        _expect(src, ae, f"{part}.config.antialias_activation", (False,), default=False)
        _expect(src, ae, f"{part}.config.use_nearest_upsample", (False,), default=False)
    _expect(src, ae, "decoder.config.final_tanh", (False,), default=True)
    _expect(src, ae, "bottleneck.type", ("vae",))
    dec, enc = ae["decoder"]["config"], ae["encoder"]["config"]
    if list(dec["c_mults"]) != list(enc["c_mults"]) or list(dec["strides"]) != list(enc["strides"]):
        _refuse(src, "pretransform.config.decoder.c_mults/strides", (dec["c_mults"], dec["strides"]),
                "the encoder's c_mults and strides")
    if enc.get("latent_dim") != 2 * dec["latent_dim"]:
        _refuse(src, "pretransform.config.encoder.config.latent_dim", enc.get("latent_dim"),
                "2 x the decoder latent_dim (a VAE bottleneck)")
    if dec.get("out_channels", 2) != 2 or enc.get("in_channels", 2) != 2:
        _refuse(src, "pretransform.config.decoder.config.out_channels", dec.get("out_channels"), "2 (stereo)")
    vae = OobleckConfig(channels=dec["channels"], c_mults=tuple(dec["c_mults"]), strides=tuple(dec["strides"]),
                        latent_dim=dec["latent_dim"])
    if ae.get("downsampling_ratio", vae.hop) != vae.hop:
        _refuse(src, "pretransform.config.downsampling_ratio", ae["downsampling_ratio"], f"prod(strides) = {vae.hop}")

    conds = {c["id"]: c for c in _get(src, raw, f"{m}.conditioning.configs")}
    if set(conds) != {"prompt", "seconds_total"}:
        _refuse(src, "model.conditioning.configs[].id", sorted(conds), "exactly 'prompt' and 'seconds_total'")
    _expect(src, conds["prompt"], "type", ("t5",))
    _expect(src, conds["seconds_total"], "type", ("number",))
    diff = _get(src, raw, f"{m}.diffusion")
    _expect(src, diff, "type", ("dit",))
    _expect(src, diff, "diffusion_objective", ("rectified_flow", "rf_denoiser"))
    if list(diff.get("cross_attention_cond_ids", [])) != ["prompt", "seconds_total"]:
        _refuse(src, "model.diffusion.cross_attention_cond_ids", diff.get("cross_attention_cond_ids"),
                "['prompt', 'seconds_total']")
    if list(diff.get("global_cond_ids", [])) != ["seconds_total"]:
        _refuse(src, "model.diffusion.global_cond_ids", diff.get("global_cond_ids"), "['seconds_total']")
    for key in ("input_concat_ids", "prepend_cond_ids"):
        if diff.get(key):
            _refuse(src, f"model.diffusion.{key}", diff[key], "none")
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
        _expect(src, dc, path, allowed, default=default)
    io = dc.get("io_channels", 32)
    if io != dec["latent_dim"]:
        _refuse(src, "model.diffusion.config.io_channels", io, f"the VAE latent_dim {dec['latent_dim']}")
    if dc["embed_dim"] % dc["num_heads"]:
        _refuse(src, "model.diffusion.config.num_heads", dc["num_heads"], "a divisor of embed_dim")
    sample_size = _get(src, raw, "sample_size")
    if sample_size % vae.hop:
        _refuse(src, "sample_size", sample_size, f"a multiple of the VAE hop {vae.hop}")
    dit = DiTConfig(io_channels=io, embed_dim=dc["embed_dim"], depth=dc["depth"], num_heads=dc["num_heads"],
                    cond_token_dim=dc["cond_token_dim"], global_cond_dim=dc.get("global_cond_dim", 0) or 0,
                    latent_length=sample_size // vae.hop)
    cond_dim = _get(src, raw, f"{m}.conditioning.cond_dim")
    if dit.cond_token_dim != cond_dim:
        _refuse(src, "model.diffusion.config.cond_token_dim", dit.cond_token_dim, f"cond_dim {cond_dim}")
    if dit.global_cond_dim != cond_dim:
        _refuse(src, "model.diffusion.config.global_cond_dim", dit.global_cond_dim, f"cond_dim {cond_dim}")
    prompt, secs = conds["prompt"].get("config", {}), conds["seconds_total"].get("config", {})
    return ModelConfig(
        dit=dit, vae=vae, vae_encoder_channels=enc["channels"],
        vae_scale=float(_get(src, raw, f"{m}.pretransform").get("scale", 1.0)),
        sample_rate=_get(src, raw, "sample_rate"), sample_size=sample_size, cond_dim=cond_dim,
        t5_model_name=prompt.get("t5_model_name", "t5-base"), max_length=prompt.get("max_length", 128),
        seconds_min=float(secs.get("min_val", 0)), seconds_max=float(secs.get("max_val", 1)),
        diffusion_objective=diff["diffusion_objective"],
    )
