"""The judge's network and its saved form: a log-mel frontend, a small CNN and one label head per factor.

    cfg = JudgeConfig()                                   # 64 mel bands at 44.1 kHz, 4 conv blocks, 62k parameters
    net = JudgeNet(cfg, vocab={"family": [...], "kind": [...], "tempo_band": [...]})
    mel = log_mel(audio, cfg)                             # audio [C, N] (any channels) -> dB [M, T] (mono mix)
    logits, emb = net(mel[None])                          # {head: [1, K_head]}, embedding [1, E]
    save_judge(out_dir, net, meta={...})                  # judge.safetensors + judge.json, into an existing folder
    judge = load_judge(out_dir)                           # -> Judge(net, meta): embed / predict whole clips

Frontend (no resampling: audio is read at `sample_rate`): mono mix, |STFT|^2 with a periodic Hann window of n_fft
samples every `hop` (centred, reflect-padded; divided by the window's sum, so a full-scale sine peaks near 0.25),
n_mels triangular filters evenly spaced on the HTK mel scale from f_min to f_max (peak 1, not area-normalised),
10 log10(power + 1e-10) dB. The network subtracts the training set's per-band mean and divides by its std (buffers
saved with the weights), so a loudness change of g dB shifts every band's input by g / std.

Network: `blocks` of [3x3 conv (no bias), BatchNorm, ReLU, 2x2 max-pool] on the [1, M, T] dB image; the mean over
frequency and time of the last block is the embedding [E = channels[-1]] (the penultimate layer: what the Frechet
distance is measured on), and each head is one linear layer on it (dropout before it while training). Global
pooling makes the net length-agnostic: it trains on crops and judges whole clips.

A judge folder holds judge.safetensors (the state dict) and judge.json ({"format": FORMAT, "config": JudgeConfig,
"vocab": {head: [names]}, ...what train_judge measured}); load_judge refuses a missing or unknown key, a
config field it does not know and weights that do not fit, each with one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgegen.errors import EdgegenError
from edgegen.train.checks import SEED_MAX, check_number

FORMAT = "edgegen-judge/1"
HEADS = ("family", "kind", "tempo_band")  # the corpus label "family/kind/tempo_band", one head per factor
WEIGHTS, META = "judge.safetensors", "judge.json"
FLOOR_DB = -100.0  # log_mel's floor, 10 log10(1e-10): what pads a crop or a clip shorter than the net needs


@dataclass(frozen=True)
class JudgeConfig:
    """The frontend, the network's shape and its training recipe (all of it saved in judge.json)."""
    sample_rate: int = 44100
    n_fft: int = 2048                       # 46 ms window
    hop: int = 1024                         # 23 ms frames: 256 per 5.94 s corpus clip (a drum hit still lands
                                            # in its own frame; hop 512 doubled the step time for no gain)
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 16000.0
    channels: tuple[int, ...] = (16, 32, 64, 64)  # one block each; the embedding is channels[-1] wide: 64
                                            # dimensions, fewer than the ~100 clips of a set FD is measured on
    dropout: float = 0.2
    crop: int = 128                         # frames per training crop (2.97 s)
    batch_size: int = 32
    steps: int = 1200
    lr: float = 2e-3                        # AdamW, cosine decay to 0 over `steps`
    weight_decay: float = 1e-2
    gain_db: float = 6.0                    # each crop's level moves by a uniform +-gain_db (generated audio is
                                            # not loudness-normalised like the corpus)
    seed: int = 0

    def check(self) -> None:
        """In range (one line naming the first field that is not)."""
        for name in ("sample_rate", "n_fft", "hop", "n_mels", "crop", "batch_size", "steps"):
            check_number(name, getattr(self, name), lo=1, integer=True)
        check_number("f_min", self.f_min, lo=0)
        check_number("f_max", self.f_max, lo=self.f_min, lo_open=True, hi=self.sample_rate / 2)
        if not 1 <= len(self.channels) <= 6:
            raise EdgegenError(f"channels {list(self.channels)}: give 1 to 6 block widths, e.g. 16,32,64,128")
        for c in self.channels:
            check_number("channels", c, lo=1, hi=1024, integer=True)
        if self.n_mels < 2 ** len(self.channels) or self.crop < 2 ** len(self.channels):
            raise EdgegenError(f"n_mels {self.n_mels} and crop {self.crop} must each be at least "
                               f"{2 ** len(self.channels)}: every one of the {len(self.channels)} blocks halves them")
        check_number("dropout", self.dropout, lo=0, hi=1, hi_open=True)
        check_number("lr", self.lr, lo=0, lo_open=True)
        check_number("weight_decay", self.weight_decay, lo=0)
        check_number("gain_db", self.gain_db, lo=0)
        check_number("seed", self.seed, lo=0, hi=SEED_MAX, integer=True)

    @classmethod
    def from_dict(cls, raw: dict, *, where: str) -> "JudgeConfig":
        if not isinstance(raw, dict):
            raise EdgegenError(f"{where}: judge config is {type(raw).__name__}, not an object; train the judge again")
        if unknown := sorted(set(raw) - {f.name for f in fields(cls)}):
            raise EdgegenError(f"{where}: judge config has unknown fields {unknown}; it was written by another edgegen "
                               "version: train the judge again")
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        cfg.check()
        return cfg


# --- frontend --------------------------------------------------------------------------------------------

def mel_filters(cfg: JudgeConfig) -> torch.Tensor:
    """[n_mels, n_fft / 2 + 1] triangles on the HTK mel scale, f_min .. f_max, each peaking at 1."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges = 700.0 * (10 ** (np.linspace(mel(cfg.f_min), mel(cfg.f_max), cfg.n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))
    return torch.from_numpy(np.clip(tri, 0, None)).float()


def log_mel(audio: torch.Tensor, cfg: JudgeConfig, *, filters: torch.Tensor | None = None) -> torch.Tensor:
    """audio [C, N] or [B, C, N] at cfg.sample_rate -> dB [M, T] or [B, M, T], T = N // hop + 1 (mono mix)."""
    x = torch.as_tensor(audio, dtype=torch.float32)
    mono = x.mean(-2)                                                   # ([B,] N)
    if mono.shape[-1] <= cfg.n_fft // 2:                                # reflect padding needs more than half a window
        mono = nn.functional.pad(mono, (0, cfg.n_fft // 2 + 1 - mono.shape[-1]))
    window = torch.hann_window(cfg.n_fft)
    spec = torch.stft(mono, cfg.n_fft, hop_length=cfg.hop, window=window, center=True, pad_mode="reflect",
                      return_complex=True) / window.sum()              # ([B,] F, T)
    power = spec.real.square() + spec.imag.square()
    fb = mel_filters(cfg) if filters is None else filters
    return 10 * torch.log10(torch.einsum("mf,...ft->...mt", fb, power) + 1e-10)


# --- network ---------------------------------------------------------------------------------------------

class JudgeNet(nn.Module):
    """dB [B, M, T] -> ({head: logits [B, K_head]}, embedding [B, E])."""

    def __init__(self, cfg: JudgeConfig, vocab: dict[str, list[str]]):
        super().__init__()
        self.cfg, self.vocab = cfg, {h: list(vocab[h]) for h in HEADS}
        self.register_buffer("band_mean", torch.zeros(cfg.n_mels, 1))  # the training set's, set by train_judge
        self.register_buffer("band_std", torch.ones(cfg.n_mels, 1))
        self.register_buffer("filters", mel_filters(cfg), persistent=False)
        layers, c_in = [], 1
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.blocks = nn.Sequential(*layers)
        self.dropout = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({h: nn.Linear(c_in, len(self.vocab[h])) for h in HEADS})

    def forward(self, mel: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x = ((mel - self.band_mean) / self.band_std)[:, None]          # (B, 1, M, T)
        emb = self.blocks(x).mean(dim=(2, 3))                           # (B, E)
        return {h: head(self.dropout(emb)) for h, head in self.heads.items()}, emb

    def mel(self, audio: torch.Tensor) -> torch.Tensor:
        return log_mel(audio, self.cfg, filters=self.filters)


@dataclass
class Judge:
    """A trained judge: the network (eval mode) and what judge.json says about it (vocab, training, A_real ...)."""
    net: JudgeNet
    meta: dict

    @property
    def vocab(self) -> dict[str, list[str]]:
        return self.net.vocab

    def run(self, clips: Iterable) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Whole clips (each [C, N] at the judge's rate, any length) -> ({head: predicted index [n]}, emb [n, E])."""
        return self.run_mels(self.net.mel(torch.as_tensor(clip)) for clip in clips)

    @torch.no_grad()
    def run_mels(self, mels: Iterable[torch.Tensor]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The same from log-mel dB [M, T] (one clip at a time: clips may differ in length)."""
        preds, embs = {h: [] for h in HEADS}, []
        need = 2 ** len(self.net.cfg.channels)  # every block halves the frames
        for mel in mels:
            if mel.shape[-1] < need:  # a clip under ~0.4 s: padded with silence
                mel = nn.functional.pad(mel, (0, need - mel.shape[-1]), value=FLOOR_DB)
            logits, emb = self.net(mel[None])
            for h in HEADS:
                preds[h].append(int(logits[h].argmax(1)))
            embs.append(emb[0].double().numpy())
        return {h: np.array(v, dtype=np.int64) for h, v in preds.items()}, np.stack(embs)

    def encode(self, labels: list[str], *, where: str = "labels") -> dict[str, np.ndarray]:
        return encode_labels(labels, self.vocab, where=where)


def split_label(label: str, *, where: str) -> list[str]:
    """"strings/chorale/moderate" -> ["strings", "chorale", "moderate"] (one value per head)."""
    parts = str(label).split("/")
    if len(parts) != len(HEADS) or not all(parts):
        raise EdgegenError(f"{where}: label {label!r} is not family/kind/tempo_band (e.g. strings/chorale/moderate)")
    return parts


def encode_labels(labels: list[str], vocab: dict[str, list[str]], *, where: str) -> dict[str, np.ndarray]:
    """"family/kind/tempo_band" strings -> {head: class index [n]}; a value outside `vocab` is one error line."""
    out = {h: [] for h in HEADS}
    for i, label in enumerate(labels):
        for h, value in zip(HEADS, split_label(label, where=f"{where} (row {i + 1})")):
            if value not in vocab[h]:
                raise EdgegenError(f"{where}: label {label!r} (row {i + 1}) has {h} {value!r}, which the judge does "
                                   f"not know (it knows {', '.join(vocab[h])})")
            out[h].append(vocab[h].index(value))
    return {h: np.array(v, dtype=np.int64) for h, v in out.items()}


def save_judge(out_dir: Path, net: JudgeNet, *, meta: dict) -> None:
    """judge.safetensors + judge.json into `out_dir` (a fresh folder the caller renames into place)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}, str(out_dir / WEIGHTS))
    doc = {"format": FORMAT, "config": asdict(net.cfg), "vocab": net.vocab, **meta}
    (out_dir / META).write_text(json.dumps(doc, indent=1) + "\n")


def load_judge(path: Path) -> Judge:
    """The judge in folder `path` (written by `edgegen judge train`), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    remedy = "give the folder `edgegen judge train` wrote"
    if not (path / META).is_file() or not (path / WEIGHTS).is_file():
        raise EdgegenError(f"--judge {path}: no {META} and {WEIGHTS} there; {remedy}")
    try:
        doc = json.loads((path / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgegenError(f"{path / META} is not valid JSON ({exc}); {remedy}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        shown = doc.get("format") if isinstance(doc, dict) else None
        raise EdgegenError(f"{path / META}: format {shown!r} is not {FORMAT!r}; {remedy}")
    cfg = JudgeConfig.from_dict(doc.get("config"), where=str(path / META))
    vocab = doc.get("vocab")
    if not isinstance(vocab, dict) or set(vocab) != set(HEADS) \
            or not all(isinstance(v, list) and v and all(isinstance(s, str) for s in v) for v in vocab.values()):
        raise EdgegenError(f"{path / META}: vocab must name the classes of {', '.join(HEADS)}; {remedy}")
    net = JudgeNet(cfg, vocab)
    try:
        state = load_file(str(path / WEIGHTS))
        net.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EdgegenError(f"{path / WEIGHTS} does not fit its {META} ({first}); {remedy}") from None
    if not all(math.isfinite(float(v.abs().sum())) for v in state.values()):
        raise EdgegenError(f"{path / WEIGHTS} holds NaN or inf; {remedy}")
    return Judge(net=net.eval().requires_grad_(False), meta=doc)
