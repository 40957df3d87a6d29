"""WAV and .npy helpers shared by the CLI commands; writes go to a temporary name and are renamed.

    check_output(path, inputs={"--noise": noise_path, "--bundle": bundle})   # before any work: one error line
    write_wav(path, audio, sample_rate)                                       # temp file + rename
    with StreamingWav(path, sample_rate, channels=2) as wav: wav.write(chunk) # likewise, chunk by chunk
    read_noise(path, shape)                                                   # float32, exact shape, finite
    with wav_out(path, sr, pcm16=False, stream=True, log=print) as (on_chunk, finish): ...   # whole or streamed
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from edgegen.common import atomic_path
from edgegen.errors import EdgegenError

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def _same(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def check_writable(path: Path) -> None:
    """A new file (a WAV, a report, a cache) can replace `path`: its folder exists and takes new files, and `path` is absent or a regular file
    (never a folder, device, FIFO or socket: renaming onto those would replace them). Checked before long work."""
    path = Path(path)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise EdgegenError(f"cannot write {path}: folder {path.parent} {what}")
    try:
        mode = os.stat(path).st_mode  # follows a symlink: what the name stands for
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise EdgegenError(f"cannot write {path}: {exc.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise EdgegenError(f"cannot write {path}: it is a folder; give a file name")
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise EdgegenError(f"cannot write {path}: it is {kind}, not a regular file; give a file name")
    try:  # a real probe: a name that exists and a folder that exists can still refuse new files (/proc, read-only)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EdgegenError(f"cannot write {path}: folder {path.parent} does not take new files "
                           f"({exc.strerror or exc})") from None


def check_output(path: Path, *, inputs: Mapping[str, Path | str | None] = {}) -> None:
    """`check_writable(path)`, and `path` is none of the `inputs` ({option: file or folder}) nor inside an input
    folder (a bundle or model folder stays as it was exported). Call it before loading anything."""
    path = Path(path)
    for option, given in inputs.items():
        if given is None or str(given).startswith("random:"):
            continue
        given = Path(given)
        if _same(path, given):
            raise EdgegenError(f"cannot write {path}: it is the {option} input; give another output name")
        if given.is_dir() and _inside(path, given):
            raise EdgegenError(f"cannot write {path}: it is inside the {option} folder {given}; write it "
                               "elsewhere")
    check_writable(path)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, *, pcm16: bool = False) -> None:
    """audio [channels, n] float32 -> WAV (IEEE float32, or 16-bit PCM clipped to [-1, 1])."""
    import soundfile as sf

    path = Path(path)
    check_writable(path)
    data = np.ascontiguousarray(audio.T)
    if pcm16:
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), data, sample_rate, subtype="PCM_16" if pcm16 else "FLOAT", format="WAV")
        except RuntimeError as exc:  # soundfile reports a full disk as RuntimeError
            raise EdgegenError(f"cannot write {path}: {exc}; nothing was written") from None


class StreamingWav:
    """Writes a WAV chunk by chunk (float32 [channels, n] each) to `partial` (`.NAME.partial-PID` beside `path`),
    which can be played while it grows (the header is rewritten at every flush); when the block ends it is renamed
    onto `path`, and if the block raises it is removed and `path` is left as it was.

        with StreamingWav(path, 44100, channels=2) as wav:
            for chunk in chunks:
                wav.write(chunk)
    """

    def __init__(self, path: Path, sample_rate: int, *, channels: int, pcm16: bool = False):
        self.path, self.sample_rate, self.channels, self.pcm16 = Path(path), sample_rate, channels, pcm16
        self.partial = _partial(self.path)
        self.frames = 0

    def __enter__(self) -> "StreamingWav":
        import soundfile as sf

        check_writable(self.path)
        try:
            self._file = sf.SoundFile(str(self.partial), mode="w", samplerate=self.sample_rate,
                                      channels=self.channels, subtype="PCM_16" if self.pcm16 else "FLOAT",
                                      format="WAV")
        except (OSError, RuntimeError) as exc:
            self.partial.unlink(missing_ok=True)
            raise EdgegenError(f"cannot write {self.path}: {exc}") from None
        return self

    def write(self, chunk: np.ndarray) -> None:
        data = np.ascontiguousarray(chunk.T)
        self._file.write(np.clip(data, -1.0, 1.0) if self.pcm16 else data)
        self._file.flush()
        self.frames += data.shape[0]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._file.close()
            if exc_type is None:
                os.replace(self.partial, self.path)
        except (OSError, RuntimeError) as err:
            if exc_type is None:
                raise EdgegenError(f"cannot write {self.path}: {err}; nothing was written") from None
        finally:
            self.partial.unlink(missing_ok=True)


@contextlib.contextmanager
def wav_out(path: Path, sample_rate: int, *, pcm16: bool, stream: bool,
            log: Callable[[str], None] = lambda line: None) -> Iterator[tuple[Callable | None, Callable]]:
    """(on_chunk, finish): streamed, chunks go to a partial file beside `path` as they arrive (each one `log`ged),
    renamed onto `path` when the block ends (removed if it raises) and `finish` does nothing; otherwise `on_chunk`
    is None and `finish(wav)` writes the whole file atomically. Callers run `check_output` before loading
    anything; this checks again just before writing."""
    check_writable(path)
    if not stream:
        yield None, lambda wav: write_wav(path, wav, sample_rate, pcm16=pcm16)
        return
    with StreamingWav(path, sample_rate, channels=2, pcm16=pcm16) as out:
        log(f"  streaming into {out.partial} (renamed to {path} when complete)")

        def on_chunk(chunk):
            out.write(chunk)
            log(f"  chunk: {out.frames / sample_rate:6.2f} s of audio written")

        yield on_chunk, lambda wav: None


def read_noise(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 .npy of exactly `shape` ([steps, 64, T]) holding only finite numbers."""
    path = Path(path)
    if not path.is_file():
        raise EdgegenError(f"noise file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise EdgegenError(f"{path} is not a readable .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or tuple(arr.shape) != tuple(shape):
        got = f"{arr.dtype} {list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise EdgegenError(f"{path}: noise must be float32 {list(shape)} [steps, 64, T], got {got}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise EdgegenError(f"{path}: noise holds {bad} non-finite value(s) (NaN or inf); give finite float32 noise")
    return arr
