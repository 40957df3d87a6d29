"""What the judge measures: accuracy (adherence) with its chance levels, the Frechet distance on its embedding with
bootstrap intervals, paired differences between two sets made from the same prompts, and reconstruction scores.

    acc = accuracy(pred, truth)                      # {"family": .83, "kind": .., "tempo_band": .., "joint": ..}
    base = chance(truth, vocab)                      # {head: {"majority": share, "uniform": 1 / K}}
    fd = fd_interval(emb_a, emb_ref, seed=0)         # Interval(value, lo, hi): 95% bootstrap over clips
    d = fd_paired(emb_a, emb_b, emb_ref)             # FD(a) - FD(b) where row i of a and b share a prompt
    d = accuracy_paired(correct_a, correct_b)        # adherence(a) - adherence(b), paired likewise
    rec = reconstruction(clips, recons)              # {"mrstft": .., "si_sdr_db": ..}: a VAE against its input

Adherence is accuracy on generated audio against the labels its prompts asked for; "joint" counts a clip right
when every head is. Chance: "majority" is the share of the set's most frequent class (what the best constant
guess would score, on this very set), "uniform" is 1 / K (joint: the product over heads).

Frechet distance between Gaussians fitted to two embedding sets a [n, E], b [m, E] (float64):
|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), with S_a^1/2 from an eigendecomposition.
Its plug-in estimate is biased upward by the sets' finite size (two real sets of ~100 clips are far from 0: the
floor). Bootstrap: `n_boot` times, resample each set's clips with replacement (a paired comparison resamples the
shared prompts once for both sets) and recompute. Resampling repeats clips, which narrows a set and raises every
resampled FD, so the 2.5 / 97.5 percentiles are shifted down by that bias (bootstrap mean - estimate): the interval
is for the FD expected at these set sizes, and a set against itself (FD 0) gets an interval from 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegen.judge.model import HEADS
from edgegen.metrics import json_number, mrstft_distance, si_sdr_db

JOINT = "joint"


@dataclass(frozen=True)
class Interval:
    """An estimate and its 95% bootstrap interval (see the module docstring)."""
    value: float
    lo: float
    hi: float

    def to_json(self) -> dict:
        return {"value": json_number(round(self.value, 4)), "lo": json_number(round(self.lo, 4)),
                "hi": json_number(round(self.hi, 4))}

    def __str__(self) -> str:
        return f"{self.value:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def correct(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{head: bool [n]} and "joint" (every head right)."""
    out = {h: pred[h] == truth[h] for h in HEADS}
    out[JOINT] = np.logical_and.reduce([out[h] for h in HEADS])
    return out


def accuracy(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of clips each head gets right, and "joint"."""
    return {k: float(v.mean()) for k, v in correct(pred, truth).items()}


def chance(truth: dict[str, np.ndarray], vocab: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """{head or "joint": {"majority": the most frequent class's share in `truth`, "uniform": 1 / K}}."""
    joint = np.stack([truth[h] for h in HEADS], 1)                      # (n, 3): one row per label combination
    out = {h: {"majority": float(np.bincount(truth[h]).max() / len(truth[h])), "uniform": 1 / len(vocab[h])}
           for h in HEADS}
    out[JOINT] = {"majority": float(np.unique(joint, axis=0, return_counts=True)[1].max() / len(joint)),
                  "uniform": float(np.prod([1 / len(vocab[h]) for h in HEADS]))}
    return out


def bootstrap_accuracy(right: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Interval:
    """The share of True in `right` [n] with its 95% percentile bootstrap interval (clips resampled)."""
    rng = np.random.default_rng(seed)
    boots = right[rng.integers(len(right), size=(n_boot, len(right)))].mean(1)
    return Interval(float(right.mean()), *map(float, np.percentile(boots, [2.5, 97.5])))


def accuracy_paired(right_a: np.ndarray, right_b: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Interval:
    """mean(right_a) - mean(right_b) where row i of both comes from one prompt: its 95% interval resamples prompts."""
    if right_a.shape != right_b.shape:
        raise ValueError(f"paired sets differ in size: {right_a.shape} vs {right_b.shape}")
    return bootstrap_accuracy(right_a.astype(np.float64) - right_b, n_boot=n_boot, seed=seed)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to a [n, E] and b [m, E] (n, m >= 2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T                   # S_a^1/2
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)                   # eigenvalues of S_a^1/2 S_b S_a^1/2 (>= 0)
    fd = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(np.clip(cross, 0, None)).sum()
    return float(max(fd, 0.0))


def _shifted(value: float, boots: np.ndarray) -> Interval:
    """`value` with the bootstrap's 2.5 / 97.5 percentiles moved by its bias (mean - value)."""
    lo, hi = np.percentile(boots, [2.5, 97.5]) - (boots.mean() - value)
    return Interval(value, float(lo), float(hi))


def fd_interval(a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Interval:
    """FD(a, b) with its 95% bootstrap interval (each set's clips resampled independently), floored at 0."""
    rng = np.random.default_rng(seed)
    boots = np.array([frechet(a[rng.integers(len(a), size=len(a))], b[rng.integers(len(b), size=len(b))])
                      for _ in range(n_boot)])
    iv = _shifted(frechet(a, b), boots)
    return Interval(iv.value, max(iv.lo, 0.0), iv.hi)


def fd_paired(a: np.ndarray, b: np.ndarray, ref: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Interval:
    """FD(a, ref) - FD(b, ref) where row i of a and of b come from one prompt: each resample draws the prompts once
    for both (and `ref`'s clips independently), so what the prompts share cancels out of the interval."""
    if len(a) != len(b):
        raise ValueError(f"paired sets differ in size: {len(a)} vs {len(b)}")
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i, r = rng.integers(len(a), size=len(a)), ref[rng.integers(len(ref), size=len(ref))]
        boots.append(frechet(a[i], r) - frechet(b[i], r))
    return _shifted(frechet(a, ref) - frechet(b, ref), np.array(boots))


def reconstruction(clips, recons) -> dict[str, float]:
    """Mean over clip pairs (each [C, N], the reconstruction cut or padded to N by the caller) of
    edgegen.metrics.mrstft_distance (0 = identical spectra) and si_sdr_db (+inf = identical up to gain)."""
    pairs = list(zip(clips, recons, strict=True))
    return {"mrstft": float(np.mean([mrstft_distance(c, r) for c, r in pairs])),
            "si_sdr_db": float(np.mean([si_sdr_db(c, r) for c, r in pairs]))}
