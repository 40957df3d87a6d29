"""Writing a bundle: what `--force` may replace, a staging folder renamed when complete, the app zip, and the
converters' console output kept in a log file.

    check_bundle_output(out, force=..., make_zip=...)      # before the model loads: refuse what export must not touch
    with staging(out, force=...) as tmp: ...        # write into tmp; it becomes `out` only when the block succeeds
    zip_bundle(root, zip_path)                      # stored zip, written beside and renamed
    with ConverterLog(path, verbose=False) as log:  # fds 1 and 2 (C-level output included) go to `path`
        work(on_stage=log.passthrough(progress))    # ... except the progress lines, which reach the console

`--force` replaces only what edgegen made: a folder whose manifest.json is an edgegen manifest and whose other
files are the ones it lists, or a zip holding one such bundle. Anything else is refused, with or without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import traceback
import zipfile
from pathlib import Path

from edgegen.bundle import MANIFEST
from edgegen.common import atomic_path
from edgegen.errors import EdgegenError

LOG_NAME = "export.log"
_MARKERS = ("schema_version", "edgegen_version", "artifacts", "tokenizer")


def _manifest_files(text: str) -> set[str] | None:
    """The files an edgegen manifest names (itself included), or None when `text` is not an edgegen manifest.

    Read as plain JSON, not through `Manifest`: --force may replace a bundle that `Manifest` refuses (one from
    another edgegen version, or a hand-edited one), so only the marker keys and the file names are looked at."""
    try:
        m = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(m, dict) or not all(k in m for k in _MARKERS) or not isinstance(m["artifacts"], dict):
        return None
    try:
        named = {a["file"] for a in m["artifacts"].values()} | {m["tokenizer"]["file"]}
    except (TypeError, KeyError):
        return None
    return named | {MANIFEST} if all(isinstance(f, str) for f in named) else None


def _not_ours(path: Path, why: str) -> EdgegenError:
    return EdgegenError(f"{path} exists and {why}; --force only replaces a bundle edgegen made: choose another "
                        "--output or move it away yourself")


def _check_bundle_folder(out: Path) -> None:
    if not out.is_dir():
        raise _not_ours(out, "is not a folder")
    try:
        named = _manifest_files((out / MANIFEST).read_text())
    except OSError:
        raise _not_ours(out, f"has no readable {MANIFEST}, so it is not an edgegen bundle") from None
    if named is None:
        raise _not_ours(out, f"its {MANIFEST} is not an edgegen manifest")
    extra = sorted(p.name for p in out.iterdir() if p.name not in named)
    if extra:
        raise _not_ours(out, f"holds {extra[0]!r}, which its manifest does not list")


def _check_bundle_zip(path: Path) -> None:
    if not (path.is_file() and zipfile.is_zipfile(path)):
        raise _not_ours(path, "is not a zip file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            tops = {n.split("/", 1)[0] for n in names}
            top = next(iter(tops)) if len(tops) == 1 else None
            named = _manifest_files(zf.read(f"{top}/{MANIFEST}").decode()) if top is not None else None
    except (KeyError, OSError, zipfile.BadZipFile, UnicodeDecodeError):
        named = None
    if named is None or any(n.split("/", 1)[-1] not in named for n in names):
        raise _not_ours(path, "is not an edgegen bundle zip")


def check_bundle_output(out: Path, *, force: bool, make_zip: bool = False) -> None:
    """Raise before any work when writing `out` (and `out`.zip with `make_zip`) would clobber something:
    an existing path needs `force`, and `force` replaces only an edgegen bundle folder or bundle zip."""
    out = Path(out)
    targets = [(out, _check_bundle_folder)] + ([(out.with_suffix(".zip"), _check_bundle_zip)] if make_zip else [])
    for path, check in targets:
        if not (path.exists() or path.is_symlink()):
            continue
        if not force:
            raise EdgegenError(f"{path} already exists; pass --force to replace it")
        if path.is_symlink():
            raise _not_ours(path, "is a symbolic link")
        check(path)


@contextlib.contextmanager
def staging(out: Path, *, force: bool):
    """Yield a temporary folder beside `out`; on success it becomes `out`, on any failure (KeyboardInterrupt and
    SystemExit included) it vanishes. `out` is checked with `check_bundle_output` first."""
    out = Path(out)
    check_bundle_output(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def zip_bundle(root: Path, zip_path: Path) -> None:
    """Stored (uncompressed) zip, so an app can memory-map artifacts after copying them out; every file of `root`
    goes under the folder `zip_path.stem`."""
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in sorted(root.iterdir()):
            zf.write(f, arcname=f"{zip_path.stem}/{f.name}")


class ConverterLog:
    """Route everything written to file descriptors 1 and 2 (Python's sys.stdout / sys.stderr and C++ logging
    alike) into `path` while the block runs; `verbose` leaves the console alone.

    `passthrough(fn)` wraps a progress callback so that what it prints reaches the real console. `tail(n)` gives
    the last lines of the log (shown when a conversion fails); `record_exception()` appends a traceback.
    """

    def __init__(self, path: Path, *, verbose: bool = False):
        self.path, self.verbose = Path(path), verbose
        self._saved: list[int] = []
        self._file = None
        self._streams = None

    def __enter__(self) -> "ConverterLog":
        self._file = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")
        if not self.verbose:
            self._redirect()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._saved:
                self._restore()
        finally:
            self._file.close()

    def _flush(self) -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()

    def _redirect(self) -> None:
        self._flush()
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self._file  # a replaced sys.stdout (pytest, click's runner) has no fd to follow

    def _restore(self) -> None:
        self._flush()
        sys.stdout, sys.stderr = self._streams
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved = []

    def passthrough(self, fn):
        def call(*args, **kwargs):
            if not self._saved:
                return fn(*args, **kwargs)
            self._restore()
            try:
                return fn(*args, **kwargs)
            finally:
                self._redirect()
        return call

    def record_exception(self) -> None:
        self._file.write("\n" + traceback.format_exc())
        self._file.flush()

    def tail(self, n: int = 15) -> list[str]:
        self._file.flush()
        lines = self.path.read_text(errors="replace").splitlines()
        return [line for line in lines if line.strip()][-n:]
