"""WAV and .npy helpers shared by the CLI commands; writes go to a temporary name and are renamed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgegen.errors import EdgegenError


def check_writable(path: Path) -> None:
    """A WAV can be written at `path`: its folder exists and it is not a folder itself (checked before long work)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise EdgegenError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise EdgegenError(f"cannot write {path}: it is a folder; give a .wav file name")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, *, pcm16: bool = False) -> None:
    """audio [channels, n] float32 -> WAV (IEEE float32, or 16-bit PCM clipped to [-1, 1])."""
    import soundfile as sf

    path = Path(path)
    check_writable(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    data = np.ascontiguousarray(audio.T)
    if pcm16:
        data = np.clip(data, -1.0, 1.0)
    try:
        sf.write(str(tmp), data, sample_rate, subtype="PCM_16" if pcm16 else "FLOAT", format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class StreamingWav:
    """Writes a WAV chunk by chunk (float32 [channels, n] each) straight to `path`, so that it can be played while
    it grows (the header is rewritten at every flush); removed again if the block raises.

        with StreamingWav(path, 44100, channels=2) as wav:
            for chunk in chunks:
                wav.write(chunk)
    """

    def __init__(self, path: Path, sample_rate: int, *, channels: int, pcm16: bool = False):
        self.path, self.sample_rate, self.channels, self.pcm16 = Path(path), sample_rate, channels, pcm16
        self.frames = 0

    def __enter__(self) -> "StreamingWav":
        import soundfile as sf

        check_writable(self.path)
        self._file = sf.SoundFile(str(self.path), mode="w", samplerate=self.sample_rate, channels=self.channels,
                                  subtype="PCM_16" if self.pcm16 else "FLOAT", format="WAV")
        return self

    def write(self, chunk: np.ndarray) -> None:
        data = np.ascontiguousarray(chunk.T)
        self._file.write(np.clip(data, -1.0, 1.0) if self.pcm16 else data)
        self._file.flush()
        self.frames += data.shape[0]

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        if exc_type is not None:
            self.path.unlink(missing_ok=True)


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
