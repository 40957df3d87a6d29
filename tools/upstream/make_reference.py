#!/usr/bin/env python
"""Build an independent upstream reference for edgegen from stable-audio-tools.

Runs ONLY in the separate venv /tmp/satvenv (see README.md here), never in the
project venv. Upstream code (stable-audio-tools 0.0.20) is imported, never copied.

It builds a tiny SAO-small-family model with upstream `create_model_from_config`,
re-initialises every tensor randomly, writes the checkpoint in the official layout
(model.safetensors / model.ckpt / model_config.json), a tiny random T5 folder, and
dumps reference tensors to DIR/reference.npz.

    HF_HUB_OFFLINE=1 /tmp/satvenv/bin/python tools/upstream/make_reference.py --out DIR --seed 0

Import-time workarounds (applied in this process only, see _install_stubs):
  * torchaudio: no wheel matches torch 2.13 (torchaudio 2.11's C extension fails to
    load). Upstream imports `torchaudio.transforms.Resample` / `MelSpectrogram` at module
    level and uses neither on the paths exercised here, so a stub module is registered
    whose classes raise if ever constructed.
  * pytorch_lightning: 0.0.20's models/dit.py imports models/lora, whose training
    callbacks subclass two Lightning classes; empty stand-ins are registered.
    (0.0.20 vendors k_diffusion, so no k_diffusion stub is needed any more.)
Upstream quirks handled (also recorded in the npz / printed summary):
  * T5Conditioner asserts t5_model_name in a fixed list (T5_MODELS) and looks its width
    up in T5_MODEL_DIMS: the local tiny-T5 path is appended to both class attributes.
  * T5Conditioner loads T5 with `.to(torch.float16)` (and the autocast it means to enter
    is never entered). The reference KEEPS that cast: every T5 weight is the fp16-rounded
    value upstream conditions SAO-small with. The main arrays compute T5 in fp32 from
    those weights (`.float()` of upstream's cast model: exact, the weights do not change),
    which is what edgegen's default `--t5-precision fp16` does on CPU. Two extras:
    `*_fp16_compute` (upstream's conditioner verbatim: on CPU its activations are fp16
    too) and `t5_embeddings_fp32_weights` (T5 re-read in full precision: edgegen's
    `--t5-precision fp32`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _install_stubs() -> list[str]:
    stubs = []
    try:  # pragma: no cover - depends on the venv
        import torchaudio.transforms  # noqa: F401
    except Exception:
        for k in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
            del sys.modules[k]
        ta = types.ModuleType("torchaudio")
        tt = types.ModuleType("torchaudio.transforms")

        def _stub(name):
            def __init__(self, *a, **k):
                raise RuntimeError(f"torchaudio.transforms.{name} is stubbed in make_reference.py")
            return type(name, (), {"__init__": __init__})

        for name in TORCHAUDIO_NAMES:
            setattr(tt, name, _stub(name))
        ta.transforms = tt
        sys.modules["torchaudio"] = ta
        sys.modules["torchaudio.transforms"] = tt
        stubs.append(f"torchaudio (stub: transforms.{'/'.join(TORCHAUDIO_NAMES)} raise if constructed)")
    try:  # pragma: no cover
        import pytorch_lightning  # noqa: F401
    except Exception:
        # 0.0.20's models/lora/callbacks.py (imported by models/dit.py) subclasses two training-only classes.
        pl = types.ModuleType("pytorch_lightning")
        cb = types.ModuleType("pytorch_lightning.callbacks")
        pl.Callback = type("Callback", (), {})
        cb.ModelCheckpoint = type("ModelCheckpoint", (), {})
        pl.callbacks = cb
        sys.modules["pytorch_lightning"] = pl
        sys.modules["pytorch_lightning.callbacks"] = cb
        stubs.append("pytorch_lightning (stub: empty Callback / callbacks.ModelCheckpoint for LoRA training callbacks)")
    return stubs


# What upstream 0.0.20 imports from torchaudio at module level on the paths used here.
TORCHAUDIO_NAMES = ("Resample", "MelSpectrogram")


# transformers probes importlib.util.find_spec("torchaudio") at import time, which a
# stub module without __spec__ breaks: import it (and its T5 classes) before stubbing.
import transformers  # noqa: E402,F401
from transformers import T5EncoderModel, AutoTokenizer  # noqa: E402,F401

STUBS = _install_stubs()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import stable_audio_tools  # noqa: E402,F401
from stable_audio_tools.models import conditioners as sat_conditioners  # noqa: E402
from stable_audio_tools.models import bottleneck as sat_bottleneck  # noqa: E402
from stable_audio_tools.models.factory import create_model_from_config  # noqa: E402
from stable_audio_tools.inference import sampling as sat_sampling  # noqa: E402
from stable_audio_tools.inference import generation as sat_generation  # noqa: E402

SAMPLE_RATE = 44100
LATENT_LEN = 32
DOWNSAMPLE = 2048
SAMPLE_SIZE = LATENT_LEN * DOWNSAMPLE  # 65536
T5_DIM = 64
MAX_LEN = 64

WORDS = (
    "a an the dog cat bird birds barking meowing chirping singing playing loud soft quiet distant close "
    "rain thunder storm wind ocean waves river water stream fire crackling engine car truck train horn "
    "siren alarm bell bells church piano guitar violin cello drum drums kick snare hihat cymbal bass synth "
    "pad lead arpeggio melody chord chords beat beats loop groove rhythm tempo bpm fast slow medium "
    "ambient techno house trance dubstep jazz blues rock pop classical orchestral cinematic epic dark "
    "bright warm cold happy sad calm tense eerie footsteps door knock creak glass breaking shatter "
    "applause crowd cheering laughing talking whisper voice male female child baby crying scream "
    "city street traffic forest jungle birdsong insects crickets frogs night morning evening kitchen "
    "cooking sizzling frying boiling kettle clock ticking typing keyboard mouse click phone ringing "
    "notification beep buzz hum noise white pink brown static vinyl tape hiss reverb delay echo "
    "distortion filter sweep riser impact whoosh swoosh boom explosion gunshot laser sci-fi robot "
    "machine factory industrial metal wood plastic paper rustling leaves snow ice cracking helicopter "
    "airplane jet motorcycle bicycle skateboard horse hooves cow sheep goat rooster chicken duck "
    "with and of in on at from to by under over near far behind through while during after before "
    "120 128 140 90 100 174 80 60 minor major key of C D E F G A B sharp flat stereo mono field recording"
).split()


def _sentences(rng: random.Random, n: int) -> list[str]:
    syl = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ch", "sh", "th", "ng", "er", "an", "ing"]
    pseudo = ["".join(rng.choice(syl) for _ in range(rng.randint(2, 4))) for _ in range(1500)]
    vocab = WORDS * 4 + pseudo
    out = []
    for _ in range(n):
        k = rng.randint(3, 16)
        s = " ".join(rng.choice(vocab) for _ in range(k))
        if rng.random() < 0.5:
            s = s.capitalize()
        if rng.random() < 0.3:
            s += rng.choice([".", ",", "!", "?", " -", ";"])
        if rng.random() < 0.2:
            s += " " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(2, 8)))
        out.append(s)
    return out


def build_tiny_t5(t5_dir: Path, seed: int) -> dict:
    import sentencepiece as spm
    from transformers import AutoTokenizer, T5Config, T5EncoderModel, T5Tokenizer, T5TokenizerFast

    t5_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    corpus = t5_dir.parent / "t5_corpus.txt"
    corpus.write_text("\n".join(_sentences(rng, 800)) + "\n")
    prefix = str(t5_dir / "spiece")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=prefix, vocab_size=1000, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        num_threads=1, seed_sentencepiece_size=100000,
        minloglevel=2,
    )
    (t5_dir / "spiece.vocab").unlink(missing_ok=True)
    # Slow tokenizer -> save; then fast tokenizer converted from it (writes tokenizer.json),
    # like the real t5-base repo (spiece.model + tokenizer.json).
    slow = T5Tokenizer(vocab_file=str(t5_dir / "spiece.model"), extra_ids=100, legacy=True)
    slow.model_max_length = 512
    slow.save_pretrained(str(t5_dir))
    fast = T5TokenizerFast.from_pretrained(str(t5_dir), from_slow=True, legacy=True)
    fast.save_pretrained(str(t5_dir))
    # save_pretrained writes "add_prefix_space", which makes every later load re-convert
    # from spiece.model; drop it so AutoTokenizer loads tokenizer.json, as for real t5-base.
    tc_path = t5_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc.pop("add_prefix_space", None)
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    tok = AutoTokenizer.from_pretrained(str(t5_dir))
    vocab_size = len(tok)

    torch.manual_seed(seed + 1)
    cfg = T5Config(
        vocab_size=vocab_size, d_model=T5_DIM, d_kv=16, num_heads=4, d_ff=128, num_layers=2,
        num_decoder_layers=2, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="relu", dropout_rate=0.0, layer_norm_epsilon=1e-6, is_encoder_decoder=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, initializer_factor=1.0,
    )
    enc = T5EncoderModel(cfg)
    with torch.no_grad():  # make the layer norms non-trivial too
        for n, p in enc.named_parameters():
            if "layer_norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    enc.save_pretrained(str(t5_dir), safe_serialization=True)
    return {"tokenizer_class": type(tok).__name__, "vocab_size": vocab_size,
            "spm_pieces": spm.SentencePieceProcessor(model_file=prefix + ".model").get_piece_size()}


def small_config(t5_path: str, vae_channels: int = 16) -> dict:
    return {
        "model_type": "diffusion_cond",
        "sample_size": SAMPLE_SIZE,
        "sample_rate": SAMPLE_RATE,
        "audio_channels": 2,
        "model": {
            "pretransform": {
                "type": "autoencoder",
                "iterate_batch": False,
                "model_half": False,
                "config": {
                    "encoder": {"type": "oobleck", "requires_grad": False, "config": {
                        "in_channels": 2, "channels": vae_channels, "c_mults": [1, 2, 4, 8, 16],
                        "strides": [2, 4, 4, 8, 8], "latent_dim": 128, "use_snake": True}},
                    "decoder": {"type": "oobleck", "config": {
                        "out_channels": 2, "channels": vae_channels, "c_mults": [1, 2, 4, 8, 16],
                        "strides": [2, 4, 4, 8, 8], "latent_dim": 64, "use_snake": True,
                        "final_tanh": False}},
                    "bottleneck": {"type": "vae"},
                    "latent_dim": 64,
                    "downsampling_ratio": DOWNSAMPLE,
                    "io_channels": 2,
                },
            },
            "conditioning": {
                "configs": [
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": t5_path, "max_length": MAX_LEN}},
                    {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}},
                ],
                "cond_dim": T5_DIM,
            },
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_total"],
                "global_cond_ids": ["seconds_total"],
                "diffusion_objective": "rf_denoiser",
                "type": "dit",
                "config": {
                    "io_channels": 64, "embed_dim": 128, "depth": 2, "num_heads": 2,
                    "cond_token_dim": T5_DIM, "global_cond_dim": T5_DIM,
                    "transformer_type": "continuous_transformer",
                    "attn_kwargs": {"qk_norm": "ln"},
                },
            },
            "io_channels": 64,
        },
    }


def register_t5_path(t5_path: str) -> None:
    T5C = sat_conditioners.T5Conditioner
    if t5_path not in T5C.T5_MODELS:
        T5C.T5_MODELS = list(T5C.T5_MODELS) + [t5_path]
    T5C.T5_MODEL_DIMS = dict(T5C.T5_MODEL_DIMS, **{t5_path: T5_DIM})


@torch.no_grad()
def reinit(model: torch.nn.Module, seed: int, random_ln_beta: bool) -> dict:
    """Random, well-scaled values for every parameter and buffer except inv_freq."""
    g = torch.Generator().manual_seed(seed + 2)
    counts = {}

    def rn(shape, std, mean=0.0):
        return torch.randn(shape, generator=g) * std + mean

    def tag(k):
        counts[k] = counts.get(k, 0) + 1

    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight_v":
            p.copy_(rn(p.shape, 1.0)); tag("weight_v N(0,1)")
        elif leaf == "weight_g":
            p.copy_(torch.rand(p.shape, generator=g) * 0.7 + 0.5); tag("weight_g U(0.5,1.2)")
        elif leaf in ("alpha", "beta") and ".pretransform." in "." + name:
            p.copy_(rn(p.shape, 0.1)); tag("snake alpha/beta N(0,0.1)")
        elif leaf == "gamma":
            p.copy_(rn(p.shape, 0.1, 1.0)); tag("LN gamma 1+N(0,0.1)")
        elif ("q_norm" in name or "k_norm" in name) and leaf == "weight":
            p.copy_(rn(p.shape, 0.1, 1.0)); tag("qk-LN weight 1+N(0,0.1)")
        elif ("q_norm" in name or "k_norm" in name) and leaf == "bias":
            p.copy_(rn(p.shape, 0.1)); tag("qk-LN bias N(0,0.1)")
        elif name.endswith("timestep_features.weight") or name.endswith("embedding.0.weights"):
            p.copy_(rn(p.shape, 1.0)); tag("fourier/learned-pos N(0,1)")
        elif leaf == "bias":
            p.copy_(rn(p.shape, 0.05)); tag("bias N(0,0.05)")
        elif p.ndim >= 2:
            fan_in = p[0].numel()
            p.copy_(rn(p.shape, max(0.02, min(0.2, 1.0 / math.sqrt(fan_in))))); tag("weight N(0,clip(1/sqrt(fan_in),.02,.2))")
        else:
            raise RuntimeError(f"unhandled parameter {name} {tuple(p.shape)}")
    buffers = []
    for name, b in model.named_buffers():
        leaf = name.rsplit(".", 1)[-1]
        buffers.append(name)
        if leaf == "inv_freq":
            tag("inv_freq kept")
        elif name.endswith("timestep_features.weight"):  # a buffer in 0.0.20 (a parameter in 0.0.19): same init
            b.copy_(rn(b.shape, 1.0)); tag("fourier/learned-pos N(0,1)")
        elif leaf == "beta":
            if random_ln_beta:
                b.copy_(rn(b.shape, 0.1)); tag("LN beta buffer N(0,0.1)")
            else:
                tag("LN beta buffer kept zero")
        elif b.is_floating_point():
            b.copy_(rn(b.shape, 0.1)); tag(f"other buffer N(0,0.1): {leaf}")
        else:
            tag(f"non-float buffer kept: {leaf}")
    return counts


class NoiseFeed:
    """Patches torch.randn / torch.randn_like so that they return given tensors in order."""

    def __init__(self, tensors):
        self.queue = list(tensors)
        self.log = []

    def __enter__(self):
        self._randn, self._randn_like = torch.randn, torch.randn_like

        def randn(*size, **kw):
            shp = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple, torch.Size)) else tuple(size)
            return self._pop("randn", shp, kw.get("dtype"), kw.get("device"))

        def randn_like(x, **kw):
            return self._pop("randn_like", tuple(x.shape), kw.get("dtype") or x.dtype, kw.get("device") or x.device)

        torch.randn, torch.randn_like = randn, randn_like
        return self

    def _pop(self, fn, shape, dtype, device):
        if not self.queue:
            raise RuntimeError(f"NoiseFeed exhausted at {fn}{shape}")
        t = self.queue.pop(0)
        assert tuple(t.shape) == tuple(shape), (fn, t.shape, shape)
        self.log.append(f"{fn}{list(shape)}")
        return t.to(dtype=dtype or torch.float32, device=device or "cpu").clone()

    def __exit__(self, *exc):
        torch.randn, torch.randn_like = self._randn, self._randn_like
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-channels", type=int, default=16, help="Oobleck base channels (4 for the test fixture)")
    ap.add_argument("--random-ln-beta", action="store_true",
                    help="also randomise the block-LayerNorm beta buffers (zero in the real checkpoint)")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seed = args.seed
    torch.manual_seed(seed)
    torch.set_grad_enabled(False)
    device = "cpu"

    # ---- 1. tiny T5 -----------------------------------------------------------------
    t5_dir = out / "t5"
    t5_info = build_tiny_t5(t5_dir, seed)
    t5_path = str(t5_dir)
    register_t5_path(t5_path)

    # ---- 2. model -------------------------------------------------------------------
    config = small_config(t5_path, args.vae_channels)
    model = create_model_from_config(config).eval()
    t5c = model.conditioner.conditioners["prompt"]
    t5_dtype_upstream = str(next(t5c.model.parameters()).dtype)
    init_counts = reinit(model, seed, args.random_ln_beta)
    # Keep upstream's fp16 cast of the T5 weights; compute in fp32 from exactly those weights for the main arrays.
    import copy
    from transformers import T5EncoderModel
    assert t5_dtype_upstream == "torch.float16", f"upstream no longer casts T5 to fp16 ({t5_dtype_upstream})"
    t5_fp16 = t5c.model  # upstream's conditioner model, as upstream casts it
    t5_rounded = copy.deepcopy(t5_fp16).float().eval().requires_grad_(False)  # fp16-rounded values, fp32 compute
    t5_full = T5EncoderModel.from_pretrained(t5_path, torch_dtype=torch.float32).eval().requires_grad_(False)
    rounding = max(float((a.float() - b).abs().max()) for a, b in zip(t5_fp16.parameters(), t5_full.parameters()))
    assert rounding > 0
    assert all(torch.equal(a.float(), b) for a, b in zip(t5_fp16.parameters(), t5_rounded.parameters()))
    t5c.__dict__["model"] = t5_rounded
    t5_dtype_reference = "float32 compute on upstream's fp16-cast weights"

    # ---- 3. checkpoint --------------------------------------------------------------
    mdir = out / "model"
    mdir.mkdir(exist_ok=True)
    (mdir / "model_config.json").write_text(json.dumps(config, indent=2) + "\n")
    sd = model.state_dict()
    official_prefixes = ("model.model.", "pretransform.model.", "conditioner.conditioners.seconds_total.")
    dropped = [k for k in sd if not k.startswith(official_prefixes)]
    sd = {k: v.detach().clone().contiguous() for k, v in sd.items() if k.startswith(official_prefixes)}
    assert not any("t5" in k.lower() or "prompt" in k for k in sd), "T5 tensors in state dict"
    from safetensors.torch import save_file
    save_file(sd, str(mdir / "model.safetensors"))
    torch.save({"state_dict": sd}, str(mdir / "model.ckpt"))
    # reload strictly to prove the layout loads into the upstream module
    from safetensors.torch import load_file
    missing, unexpected = model.load_state_dict(load_file(str(mdir / "model.safetensors")), strict=False)
    assert not unexpected and set(missing) == set(dropped), (missing, unexpected)

    ref: dict[str, np.ndarray] = {}

    def put(k, v):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu()
            v = v.to(torch.int64) if not v.is_floating_point() else v.to(torch.float32)
            v = v.numpy()
        v = np.asarray(v)
        if v.dtype.kind == "f":
            v = v.astype(np.float32)
        elif v.dtype.kind in "iub":
            v = v.astype(np.int64)
        ref[k] = v

    # ---- 4a. conditioning -----------------------------------------------------------
    long_prompt = (
        "A sprawling cinematic orchestral piece that opens with a lonely solo cello playing a slow minor "
        "melody over distant rolling thunder and soft rain on a tin roof, then gradually introduces warm "
        "string pads, shimmering harp arpeggios and a gentle choir of female voices singing wordless vowels, "
        "while deep taiko drums and booming bass hits build tension underneath, eventually erupting into a "
        "triumphant full brass fanfare with crashing cymbals, soaring violins and a thundering timpani roll, "
        "before everything fades away into the sound of wind blowing across an empty snowy mountain valley "
        "at night, with an owl hooting far away, crickets chirping quietly, a crackling campfire nearby and "
        "the faint echo of a church bell ringing three times in the village below the dark pine forest."
    )
    prompts = ["a dog barking", "", long_prompt]
    max_seconds = SAMPLE_SIZE / SAMPLE_RATE
    seconds_req = [3.0, 1.0, 1.5]
    seconds = [min(s, max_seconds) for s in seconds_req]
    enc = t5c.tokenizer(prompts, truncation=True, max_length=t5c.max_length, padding="max_length", return_tensors="pt")
    put("prompt_input_ids", enc["input_ids"])
    put("prompt_attention_mask", enc["attention_mask"])
    put("prompt_untruncated_len", np.array([len(t5c.tokenizer(p)["input_ids"]) for p in prompts]))
    put("seconds_total_requested", np.array(seconds_req))
    put("seconds_total", np.array(seconds))
    metadata = [{"prompt": p, "seconds_total": s} for p, s in zip(prompts, seconds)]
    cond_tensors = model.conditioner(metadata, device)
    put("t5_embeddings", cond_tensors["prompt"][0])
    put("t5_mask", cond_tensors["prompt"][1])
    put("seconds_embedding", cond_tensors["seconds_total"][0])  # [B,1,C]
    ci = model.get_conditioning_inputs(cond_tensors)
    put("cross_attn_cond", ci["cross_attn_cond"])
    put("cross_attn_mask", ci["cross_attn_mask"])
    put("global_cond", ci["global_cond"])
    # extras: upstream's conditioner verbatim (fp16 weights AND fp16 activations on CPU), and full-precision weights
    t5c.__dict__["model"] = t5_fp16
    try:
        cond16 = model.conditioner(metadata, device)
        put("t5_embeddings_fp16_compute", cond16["prompt"][0])
        put("cross_attn_cond_fp16_compute", model.get_conditioning_inputs(cond16)["cross_attn_cond"])
        fp16_note = "ok"
    finally:
        t5c.__dict__["model"] = t5_full
    put("t5_embeddings_fp32_weights", t5c(prompts, device)[0])
    t5c.__dict__["model"] = t5_rounded  # back to the main arrays' T5 for everything below
    # extra: raw number-conditioner embeddings, no clamp to the model length (tests 0..256 clamp)
    sec_raw = [0.0, 1.0, 3.0, 11.0, 256.0, 300.0]
    put("seconds_raw_values", np.array(sec_raw))
    put("seconds_raw_embedding", model.conditioner.conditioners["seconds_total"](sec_raw, device)[0])

    # ---- 4b. DiT velocity -----------------------------------------------------------
    gx = torch.Generator().manual_seed(seed + 10)
    B = len(prompts)
    x = torch.randn(B, 64, LATENT_LEN, generator=gx)
    t = torch.tensor([0.9, 0.5, 0.1])
    put("dit_x", x)
    put("dit_t", t)
    v = model.model(x, t, cross_attn_cond=ci["cross_attn_cond"], cross_attn_mask=ci["cross_attn_mask"],
                    global_cond=ci["global_cond"], cfg_scale=1.0)
    put("dit_v", v)
    v4 = model.model(x, t, cross_attn_cond=ci["cross_attn_cond"], cross_attn_mask=ci["cross_attn_mask"],
                     global_cond=ci["global_cond"], cfg_scale=4.0)
    put("dit_v_cfg4", v4)

    # ---- 4c. decoder / encoder ------------------------------------------------------
    z = torch.randn(1, 64, LATENT_LEN, generator=gx)
    put("dec_latents", z)
    put("dec_audio", model.pretransform.decode(z))
    n = torch.arange(SAMPLE_SIZE, dtype=torch.float32) / SAMPLE_RATE
    audio = torch.stack([0.4 * torch.sin(2 * math.pi * 440 * n), 0.3 * torch.sin(2 * math.pi * 97 * n + 1.0)])[None]
    audio = audio + 0.05 * torch.randn(1, 2, SAMPLE_SIZE, generator=gx)
    put("enc_audio", audio)
    raw = model.pretransform.model.encoder(audio)
    mean, scale = raw.chunk(2, dim=1)
    put("enc_raw", raw)
    put("enc_mean", mean)
    put("enc_scale", scale)
    enc_noise = torch.randn(1, 64, LATENT_LEN, generator=gx)
    put("enc_noise", enc_noise)
    with NoiseFeed([enc_noise]) as nf:
        enc_sample = model.pretransform.encode(audio)
    assert not nf.queue and nf.log == [f"randn_like[1, 64, {LATENT_LEN}]"], nf.log
    put("enc_sample", enc_sample)
    chk = mean + (torch.nn.functional.softplus(scale) + 1e-4) * enc_noise
    enc_err = (chk - enc_sample).abs().max().item()

    # ---- 4d. full 8-step ping-pong generation ---------------------------------------
    steps = 8
    gen_noise = torch.randn(steps, 64, LATENT_LEN, generator=gx)
    put("gen_noise", gen_noise)
    feed = [gen_noise[0:1]] + [gen_noise[k:k + 1] for k in range(1, steps)] + [torch.zeros(1, 64, LATENT_LEN)]
    rec = {"x": [], "denoised": [], "t": []}

    def callback(d):
        rec["x"].append(d["x"].clone()); rec["denoised"].append(d["denoised"].clone()); rec["t"].append(float(d["t"]))

    captured = {}
    orig_pp = sat_sampling.sample_flow_pingpong

    def pp_wrapper(model_fn, x, *a, **kw):
        captured["sigmas"] = kw["sigmas"].clone()
        captured["x_init"] = x.clone()
        res = orig_pp(model_fn, x, *a, **kw)
        captured["latents"] = res.clone()
        return res

    def generate(**extra):  # the one generation call; each run below differs only in `extra`
        return sat_generation.generate_diffusion_cond(
            model, steps=steps, cfg_scale=1.0, conditioning=[{"prompt": "a dog barking", "seconds_total": 1.0}],
            batch_size=1, sample_size=SAMPLE_SIZE, sample_rate=SAMPLE_RATE, seed=seed, device=device,
            sampler_type="pingpong", sigma_max=1.0, **extra)

    sat_sampling.sample_flow_pingpong = pp_wrapper
    try:
        with NoiseFeed(feed) as nf:
            gen_audio = generate(callback=callback)
    finally:
        sat_sampling.sample_flow_pingpong = orig_pp
    assert not nf.queue and len(nf.log) == steps + 1, nf.log
    assert torch.equal(captured["x_init"], gen_noise[0:1])
    put("gen_sigmas", captured["sigmas"])
    put("gen_step_x", torch.cat(rec["x"]))
    put("gen_step_denoised", torch.cat(rec["denoised"]))
    put("gen_latents", captured["latents"])
    put("gen_audio", gen_audio)
    put("gen_seconds_total", np.array([1.0]))
    # extra: the same generation with upstream's conditioner verbatim (T5 activations in fp16 on CPU)
    t5c.__dict__["model"] = t5_fp16
    try:
        with NoiseFeed(list(feed)) as nf16:
            gen16 = generate()
    finally:
        t5c.__dict__["model"] = t5_rounded
    assert not nf16.queue
    put("gen_audio_fp16_compute", gen16)
    # extra: the same generation on 0.0.19's schedule (logSNR -6 .. 2; 0.0.20's default anchor is -6.2)
    legacy = sat_sampling.LogSNRShift(rate=0, anchor_logsnr=-6.0, logsnr_end=2.0)
    main_capture = dict(captured)
    sat_sampling.sample_flow_pingpong = pp_wrapper
    try:
        with NoiseFeed(list(feed)) as nfl:
            gen_legacy = generate(dist_shift=legacy)
    finally:
        sat_sampling.sample_flow_pingpong = orig_pp
    assert not nfl.queue
    put("gen_sigmas_legacy_schedule", captured["sigmas"])
    put("gen_audio_legacy_schedule", gen_legacy)

    # ---- 4e. audio-to-audio: the same generation from init audio, init_noise_level S ------
    # Upstream: prepare_audio (PadCrop to sample_size, randomize=False; stereo) -> pretransform.encode
    # (VAEBottleneck: randn_like(mean) * (softplus(scale) + 1e-4) + mean, then / pretransform.scale)
    # -> sample_diffusion(init_data=...): x = init * (1 - S) + noise * S, build_schedule(sigma_max=S).
    # Noise draws, in order: the chain's initial x (torch.randn, right after manual_seed), the VAE
    # sample (torch.randn_like inside vae_sample), then the sampler's re-noise draws. The chain noise
    # is gen_noise itself, so S = 1 must give the text-to-audio output.
    ga = torch.Generator().manual_seed(seed + 20)
    a2a_len = SAMPLE_SIZE - 5536  # shorter than the model: PadCrop zero-pads the end
    na = torch.arange(a2a_len, dtype=torch.float32) / SAMPLE_RATE
    freqs = 80.0 + 800.0 * torch.rand(2, 3, generator=ga)  # 3 tones per channel
    phases = 2 * math.pi * torch.rand(2, 3, generator=ga)
    a2a_init = (0.15 * torch.sin(2 * math.pi * freqs[:, :, None] * na + phases[:, :, None])).sum(1)
    a2a_init = a2a_init + 0.02 * torch.randn(2, a2a_len, generator=ga)  # [2, n], peak ~0.5
    a2a_vae_noise = torch.randn(1, 64, LATENT_LEN, generator=ga)
    put("a2a_init_audio", a2a_init)
    put("a2a_init_sample_rate", np.array([SAMPLE_RATE]))
    put("a2a_vae_noise", a2a_vae_noise)
    put("a2a_noise", gen_noise)
    a2a_feed = [feed[0], a2a_vae_noise] + feed[1:]
    a2a = {}
    orig_prepare, orig_vae_sample, orig_sd = sat_generation.prepare_audio, sat_bottleneck.vae_sample, sat_generation.sample_diffusion

    def prepare_wrapper(*a, **kw):
        a2a["prepared"] = orig_prepare(*a, **kw).clone()
        return a2a["prepared"]

    def vae_sample_wrapper(mean, scale):
        a2a["mean"], a2a["std"] = mean.clone(), torch.nn.functional.softplus(scale) + 1e-4  # upstream's stdev
        latents, kl = orig_vae_sample(mean, scale)
        a2a["sample"] = latents.clone()
        return latents, kl

    def sd_wrapper(*a, **kw):
        a2a["init_data"] = kw["init_data"].clone()
        return orig_sd(*a, **kw)

    def generate_a2a(level, **extra):  # `generate` from init audio, noise fed in upstream's draw order
        sat_generation.prepare_audio, sat_bottleneck.vae_sample = prepare_wrapper, vae_sample_wrapper
        sat_generation.sample_diffusion, sat_sampling.sample_flow_pingpong = sd_wrapper, pp_wrapper
        try:
            with NoiseFeed(list(a2a_feed)) as nfa:
                res = generate(init_audio=(SAMPLE_RATE, a2a_init.clone()), init_noise_level=level, **extra)
        finally:
            sat_generation.prepare_audio, sat_bottleneck.vae_sample = orig_prepare, orig_vae_sample
            sat_generation.sample_diffusion, sat_sampling.sample_flow_pingpong = orig_sd, orig_pp
        assert not nfa.queue and nfa.log[1] == f"randn_like[1, 64, {LATENT_LEN}]", nfa.log
        assert torch.equal(a2a["sample"], a2a_vae_noise * a2a["std"] + a2a["mean"])
        return res, nfa.log

    a2a_level = 0.5
    put("a2a_init_noise_level", np.array([a2a_level]))
    a2a_audio, a2a_log = generate_a2a(a2a_level)
    pretransform_scale = float(model.pretransform.scale)
    assert torch.equal(a2a["init_data"], a2a["sample"] / pretransform_scale)
    assert torch.equal(captured["x_init"], a2a["init_data"] * (1 - a2a_level) + gen_noise[0:1] * a2a_level)
    assert torch.equal(a2a["prepared"][0, :, :a2a_len], a2a_init) and not a2a["prepared"][..., a2a_len:].any()
    put("a2a_prepared_audio", a2a["prepared"])
    put("a2a_latent_mean", a2a["mean"])
    put("a2a_latent_std", a2a["std"])
    put("a2a_init_latents", a2a["init_data"])
    put("a2a_x_init", captured["x_init"])
    put("a2a_sigmas", captured["sigmas"])
    a2a_sigmas_list = captured["sigmas"].tolist()
    put("a2a_latents", captured["latents"])
    put("a2a_audio", a2a_audio)
    a2a_legacy, _ = generate_a2a(a2a_level, dist_shift=legacy)
    put("a2a_sigmas_legacy_schedule", captured["sigmas"])
    put("a2a_audio_legacy_schedule", a2a_legacy)
    a2a_s1, _ = generate_a2a(1.0, dist_shift=legacy)
    put("a2a_audio_s1_legacy_schedule", a2a_s1)
    s1_vs_t2a = (a2a_s1 - gen_legacy).abs().max().item()
    captured.update(main_capture)  # the main generation's sigmas for the metadata below
    put("seed", np.array([seed]))

    np.savez(out / "reference.npz", **ref)
    meta = {
        "stable_audio_tools": stable_audio_tools.__version__ if hasattr(stable_audio_tools, "__version__") else
        __import__("importlib.metadata").metadata.version("stable-audio-tools"),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "tokenizers": __import__("tokenizers").__version__,
        "sentencepiece": __import__("sentencepiece").__version__,
        "numpy": np.__version__,
        "seed": seed, "random_ln_beta": args.random_ln_beta,
        "stubs": STUBS,
        "t5": dict(t5_info, path=t5_path, dtype_upstream=t5_dtype_upstream, dtype_reference=t5_dtype_reference,
                   fp16_compute_extra=fp16_note, fp16_rounding_max_abs=rounding),
        "prompts": prompts, "seconds_total_requested": seconds_req,
        "seconds_total": seconds, "dit_t": [0.9, 0.5, 0.1],
        "generation": {"call": "generate_diffusion_cond(model, steps=8, cfg_scale=1.0, conditioning=[{prompt:'a dog barking', seconds_total:1.0}], batch_size=1, sample_size=65536, sample_rate=44100, seed=SEED, device='cpu', sampler_type='pingpong', sigma_max=1.0, callback=cb)",
                       "noise_draws": nf.log,
                       "sigmas": captured["sigmas"].tolist()},
        "audio_to_audio": {
            "call": "generate(init_audio=(44100, a2a_init_audio), init_noise_level=S[, dist_shift=legacy]): the generation call above plus these",
            "init_audio_samples": a2a_len, "init_sample_rate": SAMPLE_RATE, "init_noise_level": a2a_level,
            "noise_draws": a2a_log,
            "feed": "gen_noise[0] (initial x), a2a_vae_noise (VAE bottleneck randn_like(mean)), gen_noise[1:8], zeros",
            "vae_sample": "latents = randn_like(mean) * (softplus(scale) + 1e-4) + mean; mean, scale = encoder(audio).chunk(2, dim=1)",
            "pretransform_scale": pretransform_scale,
            "x_init": "init_latents * (1 - S) + gen_noise[0] * S",
            "sigmas": a2a_sigmas_list, "sigmas_legacy_schedule": ref["a2a_sigmas_legacy_schedule"].tolist(),
            "s1_legacy_vs_gen_audio_legacy_schedule_max_abs": s1_vs_t2a,
        },
        "dropped_state_dict_keys": dropped,
        "checkpoint_tensors": len(sd),
        "reinit": init_counts,
        "encoder_sample_check_maxabs": enc_err,
        "arrays": {k: [list(v.shape), str(v.dtype)] for k, v in ref.items()},
    }
    (out / "reference_meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    # ---- summary --------------------------------------------------------------------
    print(f"stubs: {STUBS}")
    print(f"tiny T5: {t5_info}; upstream T5 dtype {t5_dtype_upstream} -> reference {t5_dtype_reference} "
          f"(fp16 rounding max |w16 - w32| {rounding:.3g}); fp16-compute extra {fp16_note}")
    print(f"checkpoint: {len(sd)} tensors -> {mdir}; dropped from state_dict: {dropped or 'nothing'}")
    print(f"reinit: {init_counts}")
    print(f"encoder sample check max|diff| = {enc_err:.3g}")
    print(f"noise draws during generation: {nf.log}")
    print(f"sigmas: {[round(s, 6) for s in captured['sigmas'].tolist()]}")
    print(f"audio-to-audio S={a2a_level}: noise draws {a2a_log}")
    for k in ("a2a_sigmas", "a2a_sigmas_legacy_schedule"):
        print(f"  {k}: {[round(float(s), 6) for s in ref[k]]}")
    print(f"  S=1 (legacy schedule) vs gen_audio_legacy_schedule: max|diff| = {s1_vs_t2a:.3g}")
    for k, v in ref.items():
        stat = f"mean {v.mean():+.4g} std {v.std():.4g}" if v.dtype.kind == "f" and v.size else ""
        print(f"  {k:28s} {str(list(v.shape)):16s} {str(v.dtype):8s} {stat}")
    print(f"wrote {out / 'reference.npz'} and {out / 'reference_meta.json'}")


if __name__ == "__main__":
    main()
