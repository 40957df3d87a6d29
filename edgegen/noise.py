"""Portable Gaussian noise: the same numbers from Python and from the C++ runner.

torch's generator cannot be reproduced outside torch, so edgegen draws its sampler noise from a
counter-based generator that is a dozen lines in any language:

    key      = splitmix64(seed)
    u64(c)   = splitmix64(key + c)                         (wrapping uint64 arithmetic)
    pair j   : a = u64(2j), b = u64(2j + 1)
               u1 = ((a >> 11) + 1) * 2^-53                in (0, 1]
               u2 = (b >> 11) * 2^-53                      in [0, 1)
               r  = sqrt(-2 ln u1)
               out[2j] = r cos(2 pi u2),  out[2j + 1] = r sin(2 pi u2)   (float64, then float32)

Elements are laid out in C order over the requested shape. `android_demo/runner` implements the
same function, so `--seed N` yields the same audio in `edgegen generate`, `edgegen run` and the
native runner.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def gaussian_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 array of `shape`, a pure function of `seed` (any int, taken mod 2^64)."""
    n = int(np.prod(shape))
    pairs = (n + 1) // 2
    key = _splitmix64(np.array([seed % (1 << 64)], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        counters = key + np.arange(2 * pairs, dtype=np.uint64)
    bits = _splitmix64(counters) >> np.uint64(11)
    u1 = (bits[0::2].astype(np.float64) + 1.0) * 2.0**-53
    u2 = bits[1::2].astype(np.float64) * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    out = np.empty(2 * pairs, dtype=np.float64)
    out[0::2] = r * np.cos(2.0 * np.pi * u2)
    out[1::2] = r * np.sin(2.0 * np.pi * u2)
    return out[:n].astype(np.float32).reshape(shape)
