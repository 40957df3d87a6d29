"""Build the native `edgegen-runner` (android_demo/runner) for one target and put it in `out_dir`.

    target          ExecuTorch                                 SentencePiece                     compiler
    host            the installed pip `executorch` wheel       Debian libsentencepiece-dev,      system c++
                                                               else built from the PyPI sdist
    linux-aarch64   the manylinux_2_28_aarch64 wheel (pip      built from the PyPI sdist         aarch64-linux-gnu-g++
                    download, cached)
    android-arm64   an ExecuTorch CMake install built for      built from the PyPI sdist         NDK clang, API 28
                    Android (see android_demo/README.md)

`out_dir` then holds `edgegen-runner` (RUNPATH $ORIGIN) and, for the wheel targets, the ExecuTorch shared
libraries beside it, so it runs from any working directory. Downloads, third-party builds and the CMake
build trees live under `cache_dir` (default ~/.cache/edgegen), so a second build of a target takes seconds.

Usage:
    build_runner(target="host", out_dir=Path("build/runner-host"))
    python -m edgegen.runner_build --target linux-aarch64 -o build/runner-aarch64
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

from edgegen.errors import EdgegenError

TARGETS = ("host", "linux-aarch64", "android-arm64")
# 0.2.0 is the newest sdist whose C++ tree vendors protobuf-lite and absl; later ones fetch them from GitHub.
SENTENCEPIECE_VERSION = "0.2.0"
ANDROID_API = 28
AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu")
RUNNER_SOURCE = Path(__file__).resolve().parents[1] / "android_demo" / "runner"

_AARCH64_TOOLCHAIN = """\
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
"""


class RunnerBuildError(EdgegenError):
    """The runner could not be built; the message names the missing piece and how to get it."""


def build_runner(
    *,
    target: str,
    out_dir: Path,
    android_ndk: Path | None = None,
    executorch_android_dir: Path | None = None,
    jobs: int = 2,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Configure and build the runner for `target`; returns `out_dir / "edgegen-runner"`.

    On failure, `out_dir` (and any parent folders) that this call created are removed again, so an early error
    such as a bad --android-ndk leaves nothing behind; a folder that existed before is left as it was."""
    out_dir = Path(out_dir).resolve()
    created = _missing_ancestor(out_dir)
    try:
        return _build(target=target, out_dir=out_dir, android_ndk=android_ndk,
                      executorch_android_dir=executorch_android_dir, jobs=jobs, cache_dir=cache_dir, log=log)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _missing_ancestor(path: Path) -> Path | None:
    """The outermost folder of `path` (itself included) that does not exist yet, or None when `path` exists."""
    top = None
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        top = p
    return top


def _build(*, target: str, out_dir: Path, android_ndk: Path | None, executorch_android_dir: Path | None, jobs: int,
           cache_dir: Path | None, log: Callable[[str], None]) -> Path:
    if target not in TARGETS:
        raise RunnerBuildError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if not (RUNNER_SOURCE / "CMakeLists.txt").is_file():
        raise RunnerBuildError(f"{RUNNER_SOURCE} is missing; build the runner from an edgegen source checkout")
    _require_tool("cmake", "cmake")
    cache = (cache_dir or Path.home() / ".cache" / "edgegen").resolve()

    if target == "host":
        _require_tool("c++", "g++")
        toolchain: list[str] = []
        et_config = executorch_sdk_root() / "share" / "cmake"
        spm_root = None if _system_sentencepiece() else _sentencepiece(cache, "host", toolchain, jobs, log)
        flavor = "wheel"
    elif target == "linux-aarch64":
        _require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
        toolchain_file = cache / "toolchains" / "aarch64-linux-gnu.cmake"
        _write_if_changed(toolchain_file, _AARCH64_TOOLCHAIN)
        toolchain = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}"]
        et_config = _aarch64_executorch_root(cache, log) / "share" / "cmake"
        spm_root = _sentencepiece(cache, "linux-aarch64", toolchain, jobs, log)
        flavor = "wheel"
    else:
        toolchain, et_config = _android_inputs(android_ndk, executorch_android_dir)
        spm_root = _sentencepiece(cache, "android-arm64", toolchain, jobs, log)
        flavor = "source"

    out_dir.mkdir(parents=True, exist_ok=True)  # only once every input is known to be there
    build_key = hashlib.sha1(f"{RUNNER_SOURCE.resolve()}\n{out_dir}".encode()).hexdigest()[:12]
    build_dir = cache / "runner-build" / f"{target}-{build_key}"
    args = [
        *toolchain,
        "-DCMAKE_BUILD_TYPE=Release",
        f"-Dexecutorch_DIR={et_config}",
        f"-DEDGEGEN_ET_FLAVOR={flavor}",
        f"-DEDGEGEN_SPM_ROOT={spm_root or ''}",
        f"-DEDGEGEN_OUTPUT_DIR={out_dir}",
    ]
    _configure(RUNNER_SOURCE, build_dir, args, log)
    log(f"building edgegen-runner ({target}) in {build_dir}")
    _run(["cmake", "--build", str(build_dir), "--target", "edgegen-runner", "-j", str(jobs)], build_dir / "build.log")
    exe = out_dir / "edgegen-runner"
    if not exe.is_file():
        raise RunnerBuildError(f"the build finished but {exe} is missing; see {build_dir / 'build.log'}")
    log(f"built {exe}")
    return exe


def qemu_aarch64_command() -> list[str] | None:
    """The prefix that runs an aarch64 Linux binary here (`qemu-aarch64 -L /usr/aarch64-linux-gnu`), or None."""
    for name in ("qemu-aarch64", "qemu-aarch64-static"):
        path = shutil.which(name)
        if path:
            return [path, "-L", str(AARCH64_SYSROOT)]
    return None


def _require_tool(name: str, apt_package: str) -> None:
    if shutil.which(name) is None:
        raise RunnerBuildError(f"`{name}` is not on PATH; install it with `apt-get install {apt_package}`")


def executorch_sdk_root() -> Path:
    """The installed executorch package directory (holds include/, lib/, share/cmake/)."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise RunnerBuildError("the `executorch` Python package is not installed; `pip install executorch==1.5.1`")
    root = Path(list(spec.submodule_search_locations)[0])
    for need in ("share/cmake/executorch-config.cmake", "lib/libexecutorch.so", "include/executorch"):
        if not (root / need).exists():
            raise RunnerBuildError(f"{root / need} is missing; this executorch wheel has no C++ SDK, "
                                   "reinstall executorch==1.5.1 from PyPI")
    return root


def _system_sentencepiece() -> bool:
    header = Path("/usr/include/sentencepiece_processor.h")
    return header.is_file() and any(Path("/usr/lib").glob("*/libsentencepiece.so"))


def _aarch64_executorch_root(cache: Path, log: Callable[[str], None]) -> Path:
    """Downloads the aarch64 executorch wheel (same version as installed) and unpacks its C++ SDK."""
    version = importlib.metadata.version("executorch")
    root = cache / f"executorch-{version}-aarch64"
    marker = root / "executorch" / "share" / "cmake" / "executorch-config.cmake"
    if marker.is_file():
        return root / "executorch"
    dl = cache / "downloads"
    wheels = sorted(dl.glob(f"executorch-{version}-*manylinux_2_28_aarch64.whl"))
    if not wheels:
        log(f"downloading the aarch64 executorch {version} wheel into {dl}")
        _run([sys.executable, "-m", "pip", "download", "--platform", "manylinux_2_28_aarch64", "--only-binary=:all:",
              "--no-deps", f"executorch=={version}", "-d", str(dl)], cache / "pip-download.log",
             fix="check network access to PyPI, or put the wheel into " + str(dl))
        wheels = sorted(dl.glob(f"executorch-{version}-*manylinux_2_28_aarch64.whl"))
    if not wheels:
        raise RunnerBuildError(f"pip downloaded no executorch-{version} manylinux_2_28_aarch64 wheel into {dl}")
    tmp = root.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheels[-1]) as zf:
        sdk = ("executorch/include/", "executorch/lib/", "executorch/share/")
        members = [m for m in zf.namelist() if m.startswith(sdk)]
        zf.extractall(tmp, members)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root / "executorch"


def _sentencepiece(cache: Path, target: str, toolchain: list[str], jobs: int, log: Callable[[str], None]) -> Path:
    """A static SentencePiece (include/sentencepiece_processor.h, lib/libsentencepiece.a) for `target`."""
    prefix = cache / f"sentencepiece-{SENTENCEPIECE_VERSION}-{target}"
    if (prefix / "lib" / "libsentencepiece.a").is_file():
        return prefix
    dl = cache / "downloads"
    sdist = dl / f"sentencepiece-{SENTENCEPIECE_VERSION}.tar.gz"
    if not sdist.is_file():
        log(f"downloading the sentencepiece {SENTENCEPIECE_VERSION} sdist into {dl}")
        _run([sys.executable, "-m", "pip", "download", "--no-binary=:all:", "--no-deps", "--no-build-isolation",
              f"sentencepiece=={SENTENCEPIECE_VERSION}", "-d", str(dl)], cache / "pip-download.log",
             fix="check network access to PyPI, or put the sdist into " + str(dl))
    src = cache / f"sentencepiece-{SENTENCEPIECE_VERSION}-src"
    if not (src / "sentencepiece" / "CMakeLists.txt").is_file():
        with tarfile.open(sdist) as tf:
            tf.extractall(cache, filter="data")
        shutil.rmtree(src, ignore_errors=True)
        (cache / f"sentencepiece-{SENTENCEPIECE_VERSION}").rename(src)
    build = cache / "sentencepiece-build" / target
    log(f"building SentencePiece {SENTENCEPIECE_VERSION} for {target} (once; cached in {prefix})")
    _configure(src / "sentencepiece", build, [
        *toolchain, "-DCMAKE_BUILD_TYPE=Release", "-DSPM_ENABLE_SHARED=OFF", "-DSPM_ENABLE_TCMALLOC=OFF",
        "-DCMAKE_POSITION_INDEPENDENT_CODE=ON"], log)
    _run(["cmake", "--build", str(build), "--target", "sentencepiece-static", "-j", str(jobs)], build / "build.log")
    (prefix / "include").mkdir(parents=True, exist_ok=True)
    (prefix / "lib").mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "sentencepiece" / "src" / "sentencepiece_processor.h", prefix / "include")
    shutil.copy2(build / "src" / "libsentencepiece.a", prefix / "lib")
    return prefix


def _android_inputs(android_ndk: Path | None, executorch_android_dir: Path | None) -> tuple[list[str], Path]:
    """NDK toolchain arguments and the ExecuTorch Android CMake config dir, or a RunnerBuildError naming the fix."""
    readme = RUNNER_SOURCE.parent / "README.md"
    if android_ndk is None:
        raise RunnerBuildError("--android-ndk PATH is required for android-arm64 "
                               f"(NDK r27+, e.g. $ANDROID_HOME/ndk/27.2.12479018); see {readme}")
    toolchain_file = Path(android_ndk) / "build" / "cmake" / "android.toolchain.cmake"
    if not toolchain_file.is_file():
        raise RunnerBuildError(f"{toolchain_file} not found; --android-ndk must point at an Android NDK root "
                               "(sdkmanager 'ndk;27.2.12479018')")
    if executorch_android_dir is None:
        raise RunnerBuildError("the ExecuTorch Android libraries are required for android-arm64: build and install "
                               f"ExecuTorch for arm64-v8a and pass its install prefix (--executorch-android-dir); see {readme}")
    prefix = Path(executorch_android_dir)
    candidates = [prefix / "lib/cmake/ExecuTorch", prefix / "lib/cmake/executorch", prefix / "share/cmake"]
    config = next((c for c in candidates if (c / "executorch-config.cmake").is_file()), None)
    if config is None:
        raise RunnerBuildError(f"no executorch-config.cmake under {executorch_android_dir}/lib/cmake/ExecuTorch; "
                               f"it must be the `cmake --install` prefix of an arm64-v8a ExecuTorch build, see {readme}")
    android = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}", "-DANDROID_ABI=arm64-v8a", f"-DANDROID_PLATFORM=android-{ANDROID_API}"]
    return android, config


def _configure(source: Path, build: Path, args: list[str], log: Callable[[str], None]) -> None:
    """Runs the CMake configure step only when the arguments changed (builds stay incremental)."""
    stamp = build / "edgegen-configure-args.txt"
    text = "\n".join([str(source), *args])
    if (build / "CMakeCache.txt").is_file() and stamp.is_file() and stamp.read_text() == text:
        return
    if build.exists():
        # Stale configuration (other arguments, or a checkout that moved): CMake refuses to reuse a cache made for
        # another source directory, so start this build directory over.
        shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    log(f"configuring {source.name} in {build}")
    _run(["cmake", "-S", str(source), "-B", str(build), *args], build / "configure.log")
    stamp.write_text(text)


def _run(cmd: list[str], log_file: Path, fix: str = "") -> None:
    """Runs `cmd`, writes its output to `log_file`, raises RunnerBuildError with the tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_file.write_text(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        hint = f"; {fix}" if fix else ""
        raise RunnerBuildError(f"`{' '.join(cmd[:4])} ...` failed (exit {proc.returncode}), "
                               f"full log in {log_file}{hint}:\n{tail}")


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgegen.runner_build", description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, default="host")
    parser.add_argument("-o", "--out-dir", type=Path, required=True)
    parser.add_argument("--android-ndk", type=Path)
    parser.add_argument("--executorch-android-dir", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    a = parser.parse_args()
    try:
        build_runner(target=a.target, out_dir=a.out_dir, android_ndk=a.android_ndk,
                     executorch_android_dir=a.executorch_android_dir, jobs=a.jobs)
    except RunnerBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
