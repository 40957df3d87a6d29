"""XNNPACK weight cache for LiteRT artifacts run from Python: packed weights kept in a file per artifact.

Without it, XNNPACK reads every weight of a .tflite to pack its own copy in anonymous memory on every load, so the
process holds all packed weights plus, while an artifact loads, its file's pages. With it, the first load packs
into a cache file and every later load maps that file: the model's own weight pages are never read, and the packed
weights are file pages (shared, droppable by the kernel) instead of anonymous memory. Same scheme as the native
runner's (android_demo/runner/src/weight_cache.h), with its own file names so the two never meet each other's
files:

    <dir>/<sha16>-litert-python<litert version>-<component>-<arch>-<cpu>.xnnpack

sha16 (the artifact's sha256 from the manifest) because XNNPACK does not notice a changed model; the LiteRT
version and the CPU's feature flags because the packed layout depends on the XNNPACK build and its micro-kernels.

A missing or invalid file is built into `<file>.tmp-<pid>` while the artifact loads and renamed into place once
the load succeeded (so a crashed or concurrent run never leaves a half-written file under the final name). A file
that looks valid but that the runtime does not map (another XNNPACK build) is removed and the artifact runs without
a cache; a load that fails with the cache is retried without it. Generation always goes on.

    cache = WeightCache.resolve(None)                    # the default folder, created; EdgegenError if unusable
    file = cache.file("dit", spec.sha256)                # None when the cache is off
"""

from __future__ import annotations

import os
import platform
import zlib
from dataclasses import dataclass
from pathlib import Path

from edgegen.errors import EdgegenError

_FIX = ("; give a writable folder with --weight-cache DIR (or EDGEGEN_WEIGHT_CACHE), or run with "
        "--no-weight-cache")


def default_dir() -> Path:
    """$EDGEGEN_WEIGHT_CACHE, else $XDG_CACHE_HOME/edgegen/xnnpack, else ~/.cache/edgegen/xnnpack (the runner's)."""
    if os.environ.get("EDGEGEN_WEIGHT_CACHE"):
        return Path(os.environ["EDGEGEN_WEIGHT_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "edgegen" / "xnnpack"
    return Path.home() / ".cache" / "edgegen" / "xnnpack"


def cpu_tag() -> str:
    """8 hex digits of the CPU's feature flags (the first flags/Features line of /proc/cpuinfo)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    flags = next((ln.split(":", 1)[1] for ln in lines if ln.startswith(("flags", "Features")) and ":" in ln), "")
    return f"{zlib.crc32(flags.encode()):08x}" if flags else "00000000"


def litert_version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a name part only
        return "unknown"


@dataclass(frozen=True)
class WeightCache:
    dir: Path | None  # None: off

    @classmethod
    def off(cls) -> "WeightCache":
        return cls(None)

    @classmethod
    def resolve(cls, folder: Path | str | None, *, enabled: bool = True, flag: str = "--weight-cache") -> "WeightCache":
        """The cache in `folder` (None: `default_dir()`), created if missing; one EdgegenError line naming the folder
        and the fix when it cannot be created or written."""
        if not enabled:
            return cls.off()
        where = flag if folder is not None else "the default weight cache folder"
        path = Path(folder) if folder is not None else default_dir()
        if str(path) == "":
            raise EdgegenError(f"{flag} is empty{_FIX}")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgegenError(f"cannot create the weight cache folder {path} ({where}): "
                               f"{exc.strerror or exc}{_FIX}") from None
        if not path.is_dir():
            raise EdgegenError(f"the weight cache folder {path} ({where}) is not a directory{_FIX}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise EdgegenError(f"the weight cache folder {path} ({where}) is not writable{_FIX}")
        return cls(path)

    @classmethod
    def from_options(cls, folder: Path | str | None, *, off: bool) -> "WeightCache":
        """--weight-cache DIR / --no-weight-cache: `resolve(folder)`, off, or one error line when both are given."""
        if folder is not None and off:
            raise EdgegenError("give --weight-cache DIR or --no-weight-cache, not both")
        return cls.resolve(folder, enabled=not off)

    def file(self, component: str, sha256: str) -> Path | None:
        if self.dir is None or len(sha256) < 16:
            return None
        name = (f"{sha256[:16]}-litert-python{litert_version()}-{component}-{platform.machine() or 'cpu'}-"
                f"{cpu_tag()}.xnnpack")
        return self.dir / name


def valid_litert_cache(path: Path) -> bool:
    """The TFLite XNNPACK delegate's cache format (header v4 in LiteRT 2.2-2.3: u64 version, u64 buffer-list offset,
    u64 buffer-list size, u8 stale flag; the buffer list ends the file), as the runner checks it. Reads 32 bytes."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(32)
    except OSError:
        return False
    if len(head) < 32:
        return False
    version, offset, list_size = (int.from_bytes(head[i:i + 8], "little") for i in (0, 8, 16))
    return version == 4 and head[24] == 0 and 32 <= offset < size and list_size == size - offset


def mapped_by_this_process(path: Path) -> bool:
    """True when this process maps `path` (by device and inode), i.e. the runtime took the cache file."""
    try:
        st = os.stat(path)
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 5:
                    continue
                major, minor = (int(x, 16) for x in parts[3].split(":"))
                if int(parts[4]) == st.st_ino and os.makedev(major, minor) == st.st_dev:
                    return True
    except (OSError, ValueError):
        return False
    return False


def remove_unless_locked(path: Path) -> None:
    """Remove a cache file the runtime refused, unless another process holds a lock on it."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> None:
    """Remove `<path>.tmp-<pid>` files whose process is gone (a crashed build)."""
    prefix = path.name + ".tmp-"
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            alive = int(pid) != os.getpid()
        except ProcessLookupError:
            alive = False
        except OSError:
            alive = True
        if not alive:
            entry.unlink(missing_ok=True)


def load_with_cache(load, file: Path | None, warn=lambda message: None):
    """`load(cache_path_or_empty)` -> model, following the rules in the module docstring. Returns (model, use) with
    use "hit", "built" or "off"."""
    if file is None:
        return load(""), "off"
    if file.is_file():
        if valid_litert_cache(file):
            try:
                model = load(str(file))
            except Exception as exc:  # noqa: BLE001 - retried without the cache below
                warn(f"loading with the weight cache {file} failed ({exc}); removed it, loading without it")
                remove_unless_locked(file)
                return load(""), "off"
            if mapped_by_this_process(file):
                return model, "hit"
            warn(f"the runtime did not take the weight cache {file} (another runtime build, or in use); "
                 "running without it")
            remove_unless_locked(file)
            return model, "off"
        warn(f"the weight cache {file} is invalid (truncated, or not this runtime's format); rebuilding it")
    remove_stale_temps(file)
    tmp = file.with_name(f"{file.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            model = load(str(tmp))
        except Exception as exc:  # noqa: BLE001
            warn(f"building the weight cache {file} failed ({exc}); loading without it")
            tmp.unlink(missing_ok=True)
            return load(""), "off"
        if not valid_litert_cache(tmp):
            warn(f"the runtime wrote no usable weight cache ({tmp}); running without one")
            return model, "off"
        try:
            os.replace(tmp, file)
        except OSError as exc:
            warn(f"cannot rename {tmp} to {file}: {exc.strerror}; the cache is not kept")
            return model, "off"
        return model, "built"
    finally:
        tmp.unlink(missing_ok=True)
