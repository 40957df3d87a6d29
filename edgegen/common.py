"""Facts and small helpers that the reference, the bundle runtime, export, parity and bench all use; each once.

    COMPONENTS, BACKENDS                  # the artifact names in pipeline order; the two runtimes
    num_samples(seconds, sample_rate)     # audio length: the nearest sample, the one rule everywhere
    check_seconds(s, max_seconds=, sample_rate=, owner=)   # one sample to max, or one EdgegenError line
    check_finite(x, what)                 # NaN / inf is an error naming `what`, never a file
    sha256_file(path), peak_rss_mb()
    hf_hub_cache()                        # where T5 is searched when no --t5 is given
    with atomic_path(out) as tmp: ...     # write `tmp`; renamed onto `out` on success, removed on failure
    write_text_atomic(out, text)
    Timings, collect_audio(chunks, ...)   # per-stage wall times of one generation
    with sigterm_unwinds() as check: ...  # SIGTERM cleans up (partial files, staging folders) as Ctrl-C does
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.errors import EdgegenError

COMPONENTS = ("text_encoder", "dit", "decoder")
ENCODER = "encoder"  # the VAE encoder: an optional fourth artifact, for audio-to-audio (`export --audio-to-audio`)
ARTIFACTS = (*COMPONENTS, ENCODER)
BACKENDS = ("executorch", "litert")


def num_samples(seconds: float, sample_rate: int) -> int:
    """Samples in `seconds` of audio: the nearest integer (0.7 s at 44.1 kHz is 30870, not the truncated 30869).
    The native runner applies the same rule (`std::nearbyint`: ties to even, like `round`)."""
    return int(round(seconds * sample_rate))


DEFAULT_SECONDS = 10.0


def default_seconds(max_seconds: float) -> float:
    """What every command generates when no --seconds is given: 10 s, or the model's maximum when that is less."""
    return min(DEFAULT_SECONDS, max_seconds)


def check_seconds(seconds: float, *, max_seconds: float, sample_rate: int, owner: str) -> None:
    """`seconds` must be a finite duration of at least one sample and at most `max_seconds`."""
    if not (math.isfinite(seconds) and num_samples(seconds, sample_rate) >= 1 and seconds <= max_seconds + 1e-6):
        raise EdgegenError(f"--seconds {seconds:g} is out of range: {owner} makes {1 / sample_rate:.2g} to "
                           f"{max_seconds:.2f} seconds")


def check_finite(x, what: str) -> None:
    """Raise one line naming `what` when `x` (tensor or array) holds NaN or inf."""
    if hasattr(x, "detach"):  # a torch tensor (any float dtype): checked by torch, which its caller has loaded
        import torch

        arr = x.detach()
        bad = int((~torch.isfinite(arr)).sum()) if arr.is_floating_point() else 0
    else:  # numpy: nothing here imports torch, so a bundle's runtime path runs without it
        arr = np.asarray(x)
        bad = int((~np.isfinite(arr)).sum()) if np.issubdtype(arr.dtype, np.floating) else 0
    if bad:
        raise EdgegenError(f"{what} holds {bad} non-finite value(s) (NaN or inf); nothing was written")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` (`.NAME.partial-PID`): renamed onto `path` when the block succeeds, removed
    when it fails, so `path` is never half-written. The block may make a file or a folder there (a folder is renamed
    onto a `path` that does not exist). An OSError becomes one EdgegenError line."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise EdgegenError(f"cannot write {path}: {exc.strerror or exc}; nothing was written") from None
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# The built-in models, by name (what `--model` accepts besides a folder or a Hugging Face repo id): here, light, so
# that every command's --help and `edgegen list` name them without importing torch; edgegen.presets builds them.
BUILTIN_MODELS = {
    "random:tiny": "SAO-small's architecture at toy width with a two-block VAE, random weights (tests; < 1 s)",
    "random:tiny-long": "random:tiny with 2.97 s of audio instead of 0.74 s",
    "random:sao-small": "SAO-small's exact shapes (a 341M-parameter DiT, T5-base), random weights (full-size benchmarks)",
}


def builtin_names() -> str:
    return ", ".join(BUILTIN_MODELS)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache searched (offline, `checkpoint.find_t5`) when no --t5 is given: $HF_HUB_CACHE,
    else $HF_HOME/hub, else ~/.cache/huggingface/hub. Here rather than in checkpoint.py: --t5's default is computed
    for every command that has the option, and this module loads no torch."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"


def peak_rss_mb() -> float:
    """The process' resident-memory high-water mark (Linux `ru_maxrss` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)
    dit_steps: list[float] = field(default_factory=list)


def collect_audio(chunks: Iterator, *, timings: Timings, start: float,
                  on_chunk: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """Drain decoded chunks [1, 2, n_i] into np.float32 [2, sum n_i], timing the decoder (`stages["decoder"]`)
    and the first audio since `start` (`stages["first_audio"]`); `on_chunk` sees each chunk as it arrives.
    A chunk with NaN or inf stops the generation before `on_chunk` writes it anywhere."""
    clock = time.perf_counter()
    parts = []
    for chunk in chunks:
        check_finite(chunk, "the decoded audio")
        chunk = chunk.detach().numpy() if hasattr(chunk, "detach") else np.asarray(chunk)  # torch or numpy [1, 2, n]
        parts.append(chunk[0].astype(np.float32, copy=False))
        if len(parts) == 1:
            timings.stages["first_audio"] = time.perf_counter() - start
        if on_chunk is not None:
            on_chunk(parts[-1])
    timings.stages["decoder"] = time.perf_counter() - clock
    return np.concatenate(parts, axis=-1)


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[Callable[[], None]]:
    """SIGTERM raises SystemExit(143) while the block runs, so cleanup (a staging folder, a partial WAV) runs as on
    Ctrl-C; the previous handler is back afterwards.

    Python drops an exception raised while a garbage-collection callback runs (jax registers one), so the block
    also gets `check()`: it raises again once SIGTERM has arrived (call it between stages), and leaving the block
    calls it too."""
    import signal

    received: list[int] = []

    def check():
        if received:
            raise SystemExit(128 + received[0])

    def terminated(signum, frame):
        received.append(signum)
        check()

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = terminated
    try:
        yield check
        check()
    finally:
        if previous is not terminated:
            signal.signal(signal.SIGTERM, previous)
