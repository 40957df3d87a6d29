"""Build the native `edgegen-runner` (android_demo/runner) for one target and put it in `out_dir`.

    target                  ExecuTorch                         LiteRT (libLiteRt.so)       SentencePiece        compiler
    host                    the installed pip `executorch`     the installed ai-edge-      Debian libsentence-  system c++
                            wheel                              litert wheel                piece-dev, else sdist
    linux-aarch64           the manylinux_2_28_aarch64 wheel   the manylinux_2_27_aarch64  built from the PyPI  aarch64-linux-
                            (pip download, cached)             wheel (pip download)        sdist                gnu-g++
    android-arm64-portable  as linux-aarch64, plus glibc's loader and libraries from Debian's cross packages
    android-arm64           an ExecuTorch CMake install built   none (LiteRT bundles need   built from the PyPI  NDK clang,
                            for Android (android_demo/README)   libLiteRt.so on the device) sdist                API 28

`out_dir` then holds `edgegen-runner` (RUNPATH $ORIGIN:$ORIGIN/../lib) and, for the wheel targets, the ExecuTorch
shared libraries and libLiteRt.so beside it, so it runs from any working directory. The portable target instead
makes a self-contained folder that runs on any arm64 Linux or Android without an NDK build, started through the
glibc loader it carries (Android has no glibc):

    out_dir/edgegen-runner          POSIX sh launcher: lib/ld-linux-aarch64.so.1 --library-path lib bin/edgegen-runner
    out_dir/bin/edgegen-runner      the aarch64 runner (both backends)
    out_dir/lib/                    ld-linux-aarch64.so.1, glibc, libstdc++, libgcc_s, ExecuTorch's .so, libLiteRt.so

Downloads, third-party builds and the CMake build trees live under `cache_dir` (default ~/.cache/edgegen), so a
second build of a target takes seconds.

Usage:
    build_runner(target="host", out_dir=Path("build/runner-host"))
    python -m edgegen.runner_build --target android-arm64-portable -o build/runner-portable
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

TARGETS = ("host", "linux-aarch64", "android-arm64-portable", "android-arm64")
PORTABLE = "android-arm64-portable"
LITERT_VERSION = "2.3.0"  # the C API android_demo/runner/src/litert_api.h declares
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
    """Configure and build the runner for `target`; returns `out_dir / "edgegen-runner"` (for the portable
    target, the launcher script).

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

    litert_lib: Path | None = None
    if target == "host":
        _require_tool("c++", "g++")
        toolchain: list[str] = []
        et_config = executorch_sdk_root() / "share" / "cmake"
        spm_root = None if _system_sentencepiece() else _sentencepiece(cache, "host", toolchain, jobs, log)
        flavor = "wheel"
        litert_lib = litert_library()
    elif target in ("linux-aarch64", PORTABLE):
        _require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
        _require_tool("aarch64-linux-gnu-readelf", "binutils-aarch64-linux-gnu")
        toolchain_file = cache / "toolchains" / "aarch64-linux-gnu.cmake"
        _write_if_changed(toolchain_file, _AARCH64_TOOLCHAIN)
        toolchain = [f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}"]
        et_config = _aarch64_executorch_root(cache, log) / "share" / "cmake"
        spm_root = _sentencepiece(cache, "linux-aarch64", toolchain, jobs, log)
        flavor = "wheel"
        litert_lib = _aarch64_litert_library(cache, log)
    else:
        toolchain, et_config = _android_inputs(android_ndk, executorch_android_dir)
        spm_root = _sentencepiece(cache, "android-arm64", toolchain, jobs, log)
        flavor = "source"

    out_dir.mkdir(parents=True, exist_ok=True)  # only once every input is known to be there
    build_key = hashlib.sha1(f"{RUNNER_SOURCE.resolve()}\n{out_dir}".encode()).hexdigest()[:12]
    build_dir = cache / "runner-build" / f"{target}-{build_key}"
    final_dir, out_dir = out_dir, (build_dir / "out" if target == PORTABLE else out_dir)
    args = [
        *toolchain,
        "-DCMAKE_BUILD_TYPE=Release",
        f"-Dexecutorch_DIR={et_config}",
        f"-DEDGEGEN_ET_FLAVOR={flavor}",
        f"-DEDGEGEN_SPM_ROOT={spm_root or ''}",
        f"-DEDGEGEN_OUTPUT_DIR={out_dir}",
        f"-DEDGEGEN_LITERT_LIB={litert_lib or ''}",
    ]
    _configure(RUNNER_SOURCE, build_dir, args, log)
    log(f"building edgegen-runner ({target}) in {build_dir}")
    _run(["cmake", "--build", str(build_dir), "--target", "edgegen-runner", "-j", str(jobs)], build_dir / "build.log")
    exe = out_dir / "edgegen-runner"
    if not exe.is_file():
        raise RunnerBuildError(f"the build finished but {exe} is missing; see {build_dir / 'build.log'}")
    if target == PORTABLE:
        exe = _portable_folder(out_dir, final_dir)
    log(f"built {exe}")
    return exe


LAUNCHER = """\
#!/bin/sh
# edgegen-runner, portable aarch64 build: starts bin/edgegen-runner through the glibc loader in lib/, so it needs
# no system glibc (Android has none) and runs from any folder: sh edgegen-runner --bundle DIR ... (see --help).
# EDGEGEN_RUNNER_WRAPPER: an optional command put in front, e.g. "qemu-aarch64" on an x86-64 host.
here=$(cd "$(dirname "$0")" && pwd) || exit 1
if [ ! -f "$here/lib/ld-linux-aarch64.so.1" ]; then
  echo "edgegen-runner: error: $here/lib/ld-linux-aarch64.so.1 is missing; copy the whole runner folder (bin/ and lib/)" >&2
  exit 2
fi
exec $EDGEGEN_RUNNER_WRAPPER "$here/lib/ld-linux-aarch64.so.1" --library-path "$here/lib" "$here/bin/edgegen-runner" "$@"
"""


def _portable_folder(built: Path, out_dir: Path) -> Path:
    """bin/edgegen-runner, lib/ with the loader and every library it needs, and the launcher; returns the launcher."""
    lib = out_dir / "lib"
    for d in (out_dir / "bin", lib):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    shutil.copy2(built / "edgegen-runner", out_dir / "bin" / "edgegen-runner")
    local = {p.name: p for p in built.glob("*.so*")}  # ExecuTorch's libraries and libLiteRt.so (dlopen'ed)
    wanted, seen = ["ld-linux-aarch64.so.1", *sorted(local)], set()
    todo = [out_dir / "bin" / "edgegen-runner"]
    while wanted or todo:
        for path in todo:
            wanted += needed_libraries(path)
        todo = []
        while wanted:
            name = wanted.pop()
            if name in seen:
                continue
            seen.add(name)
            src = local.get(name) or AARCH64_SYSROOT / "lib" / name
            if not src.exists():
                raise RunnerBuildError(f"{name} (needed by the aarch64 runner) is neither built nor in "
                                       f"{AARCH64_SYSROOT / 'lib'}; `apt-get install libc6-arm64-cross libstdc++6-arm64-cross`")
            shutil.copyfile(src.resolve(), lib / name)  # a real file under the SONAME, never a symlink
            (lib / name).chmod(0o755)
            todo.append(lib / name)
    launcher = out_dir / "edgegen-runner"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    return launcher


def needed_libraries(path: Path) -> list[str]:
    """DT_NEEDED entries of an aarch64 ELF file (aarch64-linux-gnu-readelf -d)."""
    proc = subprocess.run(["aarch64-linux-gnu-readelf", "-d", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunnerBuildError(f"aarch64-linux-gnu-readelf could not read {path}: {proc.stderr.strip()[:200]}")
    return [line.split("[", 1)[1].rstrip("]") for line in proc.stdout.splitlines() if "(NEEDED)" in line]


def portable_qemu_command(runner_dir: Path, qemu: str = "qemu-aarch64", cpu: str | None = None) -> list[str]:
    """Runs the portable runner in `runner_dir` under qemu-aarch64 with no host sysroot: its own loader and lib/."""
    return [qemu, *(["-cpu", cpu] if cpu else []), str(runner_dir / "lib" / "ld-linux-aarch64.so.1"),
            "--library-path", str(runner_dir / "lib"), str(runner_dir / "bin" / "edgegen-runner")]


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


def litert_library() -> Path:
    """libLiteRt.so of the installed ai-edge-litert wheel (the runner opens it at run time for LiteRT bundles)."""
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        raise RunnerBuildError("the `ai-edge-litert` Python package is not installed; `pip install ai-edge-litert==2.3.0`")
    lib = Path(list(spec.submodule_search_locations)[0]) / "libLiteRt.so"
    if not lib.is_file():
        raise RunnerBuildError(f"{lib} is missing; reinstall ai-edge-litert==2.3.0 from PyPI")
    return lib


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


def _aarch64_litert_library(cache: Path, log: Callable[[str], None]) -> Path:
    """libLiteRt.so of the aarch64 ai-edge-litert wheel (pip download, cached)."""
    lib = cache / f"ai-edge-litert-{LITERT_VERSION}-aarch64" / "libLiteRt.so"
    if lib.is_file():
        return lib
    dl = cache / "downloads"
    pattern = f"ai_edge_litert-{LITERT_VERSION}-*manylinux_2_27_aarch64.whl"
    if not sorted(dl.glob(pattern)):
        log(f"downloading the aarch64 ai-edge-litert {LITERT_VERSION} wheel into {dl}")
        _run([sys.executable, "-m", "pip", "download", "--platform", "manylinux_2_27_aarch64", "--only-binary=:all:",
              "--no-deps", "--python-version", "3.11", f"ai-edge-litert=={LITERT_VERSION}", "-d", str(dl)],
             cache / "pip-download.log", fix="check network access to PyPI, or put the wheel into " + str(dl))
    wheels = sorted(dl.glob(pattern))
    if not wheels:
        raise RunnerBuildError(f"pip downloaded no ai-edge-litert {LITERT_VERSION} manylinux_2_27_aarch64 wheel into {dl}")
    with zipfile.ZipFile(wheels[-1]) as zf:
        try:
            data = zf.read("ai_edge_litert/libLiteRt.so")
        except KeyError:
            raise RunnerBuildError(f"{wheels[-1]} holds no ai_edge_litert/libLiteRt.so") from None
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(lib)
    return lib


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
