"""One metric vocabulary for parity and the judges: SQNR, relative error, max abs error, cosine, multi-resolution
STFT, SI-SDR.

    compare(ref, got) -> Metrics(sqnr_db, rel_err, max_abs, cosine)
    sqnr_db(ref, got), rel_err(ref, got) -> float    (the same figures alone)
    mrstft_distance(ref_audio, got_audio) -> float   (0 = identical spectra)
    si_sdr_db(ref_audio, got_audio) -> float         (+inf = identical; a VAE's reconstruction of its clip)

All computed in float64 over every element. SQNR = 10 log10(|ref|^2 / |ref - got|^2); relative error =
|ref - got| / |ref| (|ref - got| when ref is all zeros). Identical tensors give SQNR +inf, which JSON reports carry as
the string "inf" (and a NaN, from a non-finite output, as "nan": the JSON stays strict; `json_number`). Every SQNR
and relative error in edgegen and its tests comes from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Metrics:
    sqnr_db: float
    rel_err: float
    max_abs: float
    cosine: float

    def to_json(self) -> dict:
        return {k: json_number(v) for k, v in asdict(self).items()}


def json_number(v: float) -> float | str:
    """`v` for a strict JSON report: itself when finite, else "inf", "-inf" or "nan"."""
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def _f64(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(ref, got) -> tuple[np.ndarray, np.ndarray]:
    r, g = _f64(ref).ravel(), _f64(got).ravel()
    if r.shape != g.shape:
        raise ValueError(f"shape mismatch: {r.shape} vs {g.shape}")
    return r, g


def _sqnr(power: float, err: float) -> float:
    return math.inf if err == 0 else (10 * math.log10(power / err) if power > 0 else -math.inf)


def _rel(power: float, err: float) -> float:
    return math.sqrt(err / power) if power > 0 else math.sqrt(err)


def sqnr_db(ref, got) -> float:
    """10 log10(|ref|^2 / |ref - got|^2) in dB (+inf when identical)."""
    r, g = _pair(ref, got)
    return _sqnr(float(np.sum(r ** 2)), float(np.sum((r - g) ** 2)))


def rel_err(ref, got) -> float:
    """|ref - got| / |ref| (the L2 norms over every element)."""
    r, g = _pair(ref, got)
    return _rel(float(np.sum(r ** 2)), float(np.sum((r - g) ** 2)))


def compare(ref, got) -> Metrics:
    r, g = _pair(ref, got)
    err = float(np.sum((r - g) ** 2))
    power = float(np.sum(r ** 2))
    denom = math.sqrt(power * float(np.sum(g ** 2)))
    return Metrics(sqnr_db=_sqnr(power, err), rel_err=_rel(power, err),
                   max_abs=float(np.max(np.abs(r - g))) if r.size else 0.0,
                   cosine=float(np.dot(r, g) / denom) if denom > 0 else 1.0)


def si_sdr_db(ref, got) -> float:
    """Scale-invariant SDR in dB of `got` against `ref`, both [..., N] (the last axis is time; each leading index,
    e.g. a channel, is one signal). Per signal, both are made zero-mean and ref is scaled by
    a = <got, ref> / |ref|^2 to best fit got; the target a ref and the error a ref - got have their energies summed
    over the signals: 10 log10(sum |a ref|^2 / sum |a ref - got|^2). A gain change scores as identical (+inf);
    noise unrelated to ref scores far below 0."""
    r, g = _f64(ref), _f64(got)
    if r.shape != g.shape or r.ndim == 0:
        raise ValueError(f"shape mismatch: {r.shape} vs {g.shape}")
    r, g = r.reshape(-1, r.shape[-1]), g.reshape(-1, g.shape[-1])
    r, g = r - r.mean(-1, keepdims=True), g - g.mean(-1, keepdims=True)
    energy = np.sum(r * r, -1, keepdims=True)
    a = np.divide(np.sum(g * r, -1, keepdims=True), energy, out=np.zeros_like(energy), where=energy > 0)
    target = a * r
    return _sqnr(float(np.sum(target ** 2)), float(np.sum((target - g) ** 2)))


def _stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    if x.shape[-1] < n_fft:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_fft - x.shape[-1])])
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop, :]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1))


def mrstft_distance(ref: np.ndarray, got: np.ndarray, resolutions=((2048, 512), (1024, 256), (512, 128))) -> float:
    """Mean over resolutions of spectral convergence + log-magnitude L1 (the usual MR-STFT loss)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    total = 0.0
    for n_fft, hop in resolutions:
        R, G = _stft_mag(ref, n_fft, hop), _stft_mag(got, n_fft, hop)
        sc = np.linalg.norm(R - G) / max(np.linalg.norm(R), 1e-12)
        mag = np.mean(np.abs(np.log(R + 1e-7) - np.log(G + 1e-7)))
        total += sc + mag
    return float(total / len(resolutions))
