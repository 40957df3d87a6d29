"""WAV and .npy helpers shared by the CLI commands; writes go to a temporary name and are renamed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgegen.errors import EdgegenError


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, *, pcm16: bool = False) -> None:
    """audio [channels, n] float32 -> WAV (IEEE float32, or 16-bit PCM clipped to [-1, 1])."""
    import soundfile as sf

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    data = np.ascontiguousarray(audio.T)
    if pcm16:
        data = np.clip(data, -1.0, 1.0)
    try:
        sf.write(str(tmp), data, sample_rate, subtype="PCM_16" if pcm16 else "FLOAT", format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_noise(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 .npy of exactly `shape` ([steps, 64, T])."""
    path = Path(path)
    if not path.is_file():
        raise EdgegenError(f"noise file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise EdgegenError(f"{path} is not a readable .npy file ({exc})") from None
    if arr.dtype != np.float32 or tuple(arr.shape) != tuple(shape):
        raise EdgegenError(f"{path}: noise must be float32 {list(shape)} [steps, 64, T], got {arr.dtype} "
                           f"{list(arr.shape)}")
    return arr
