"""An aarch64 CPython 3.11 that runs edgegen's LiteRT runtime under qemu-aarch64, made from Debian's arm64 packages
and PyPI's aarch64 wheels, no root file system needed:

    make(cache)                          # once; cached by the caller
    cmd = command(cache, cpu="max,sme=off")  # [qemu-aarch64, -cpu, ..., -L, <root>, <root>/usr/bin/python3.11]
    subprocess.run([*cmd, "-c", code], env={"PYTHONPATH": f"{cache}/site:{repo}"})

<root> holds the interpreter, its standard library and the shared libraries it loads (`dpkg -x` of the packages
below, fetched with `apt-get download`: Debian's arm64 architecture must be known to apt, which scripts/setup.sh
arranges when run as root); <cache>/site holds the aarch64 wheels of the Python packages the runtime imports (the
versions installed here), unpacked. Nothing here imports torch, so ExecuTorch's Python runtime is not covered: the
native runner is what runs .pte files on aarch64.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from edgegen.common import atomic_path

DEBS = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1", "zlib1g",
        "libffi8", "libgcc-s1", "libstdc++6", "libbz2-1.0", "liblzma5")
WHEELS = ("numpy", "ai-edge-litert", "ml_dtypes", "sentencepiece")  # what edgegen.bundle_pipeline imports
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")


def _run(cmd: list[str], cwd: Path, fix: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed: {last}; {fix}")


def make(dest: Path) -> None:
    """Build the interpreter's root (`dest`/root) and site folder (`dest`/site); `dest` appears only when complete."""
    with atomic_path(dest) as work:
        debs, wheels = work / "debs", work / "wheels"
        debs.mkdir(parents=True)
        _run(["apt-get", "download", *(f"{p}:arm64" for p in DEBS)], debs,
             "Debian's arm64 packages must be known to apt: run scripts/setup.sh as root (dpkg --add-architecture "
             "arm64 && apt-get update)")
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(work / "root")], work, "dpkg -x must unpack the package")
        pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
        _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps", "--python-version",
              "3.11", "--implementation", "cp", "--abi", "cp311", *(a for p in PLATFORMS for a in ("--platform", p)),
              "-d", str(wheels), *pins], work, "check access to the package index")
        for wheel in sorted(wheels.glob("*.whl")):
            shutil.unpack_archive(wheel, work / "site", format="zip")
        shutil.rmtree(debs)
        shutil.rmtree(wheels)


def key() -> str:
    """Names a build by the wheel versions it holds (the cache folder under which `make` puts it)."""
    return "-".join(f"{name}{importlib.metadata.version(name)}" for name in WHEELS)


def command(dest: Path, *, cpu: str | None = None) -> list[str]:
    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    assert qemu is not None, "qemu-aarch64 not found; install it with `apt-get install qemu-user`"
    root = dest / "root"
    return [qemu, *(["-cpu", cpu] if cpu else []), "-L", str(root), str(root / "usr" / "bin" / "python3.11")]
