"""Load a bundle's artifacts in their own runtime and call them by input name.

    arts = load_artifacts(bundle, threads=2)
    cross, glob = arts["text_encoder"](token_ids=..., attention_mask=..., seconds_total=...)

Each artifact takes numpy (or torch) inputs keyed by the manifest's input names, checks dtype and shape
against the manifest, and returns numpy arrays in the manifest's output order.

LiteRT artifacts load through LiteRT's CompiledModel with XNNPACK's weight cache (`edgegen.weight_cache`; pass
`weight_cache=WeightCache.off()` to pack in memory on every load). Nothing here imports torch: running a LiteRT
bundle never loads it (ExecuTorch's Python runtime does, by itself).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgegen.bundle import Bundle, call_order
from edgegen.errors import EdgegenError
from edgegen.manifest import ArtifactEntry
from edgegen.weight_cache import WeightCache, load_with_cache
from edgegen.xnnpack import computes_in, fp16_arithmetic, litert_settings, read_cpuinfo

_NP = {"float32": np.float32, "int32": np.int32}


class Artifact:
    """One loaded artifact, called by input name. `precision`: the float precision it computes in here ("fp32" or
    "fp16": a LiteRT artifact given FORCE_FP16 on a CPU with fp16 arithmetic, an ExecuTorch one cast at export)."""

    def __init__(self, spec: ArtifactEntry, call, *, load_s: float, weight_cache: str = "off",
                 precision: str = "fp32"):
        self.spec, self._call, self.load_s, self.weight_cache = spec, call, load_s, weight_cache
        self.precision = precision
        self.inputs = call_order(spec.inputs)
        self.input_names = [i.name for i in self.inputs]

    def __call__(self, **inputs) -> tuple[np.ndarray, ...]:
        if sorted(inputs) != sorted(self.input_names):
            raise EdgegenError(f"inputs {sorted(inputs)} do not match the artifact's {self.input_names}")
        arrays = []
        for i in self.inputs:
            a = inputs[i.name]
            a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)  # a torch tensor, or any array
            a = np.ascontiguousarray(a, dtype=_NP[i.dtype])
            if list(a.shape) != list(i.shape):
                raise EdgegenError(f"input {i.name} has shape {list(a.shape)}, the artifact takes {list(i.shape)}")
            arrays.append(a)
        return tuple(np.asarray(o) for o in self._call(arrays))


def _executorch_bindings():
    """ExecuTorch's C++ bindings alone. Its `executorch.runtime` wrapper imports them through `portable_lib`, which
    also imports `executorch.exir` (the exporter, 139 MB resident) to issue a warning; the bindings need only torch,
    whose tensors they take (`benchmarks/memory/memory_stages.py`)."""
    import torch  # noqa: F401  (loads libtorch, which the bindings link against)
    from executorch.extension.pybindings import _C

    return _C


def _executorch(path: Path, spec: ArtifactEntry, threads: int | None, component: str, cache: WeightCache):
    import torch

    bindings = _executorch_bindings()
    # what executorch.runtime.Runtime.load_program(path).load_method("forward") does, with its verification level
    program = bindings._load_program(str(path), program_verification=bindings.Verification.InternalConsistency)
    method = program.load_method("forward")
    # what the runtime maps of the .pte (the text encoder's: 96 MB, mlocked) XNNPACK has packed by now or reads
    # rarely: drop those pages as for LiteRT (anything read later faults back in from the file)
    release_file_pages(path)

    def call(arrays, _program=program):  # the method runs in its program's memory: keep both alive
        return [o.numpy() for o in method([torch.from_numpy(a) for a in arrays])]

    return call, "off"


def _set_executorch_threads(threads: int) -> None:
    try:
        _executorch_bindings()._unsafe_reset_threadpool(threads)
    except (ImportError, AttributeError):
        pass  # older wheels: XNNPACK uses its default pool size


_ENVIRONMENT = []  # one LiteRT environment per process, made at the first LiteRT load


@contextlib.contextmanager
def _quiet_stderr(log: list[str]):
    """fd 2 redirected to a temporary file for the block (LiteRT's native code logs ~30 INFO lines per model with no
    API to silence them); what it wrote is appended to `log`, for an error message."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            log.extend(tmp.read().decode(errors="replace").splitlines())


def _quiet_native_exit() -> None:
    """At exit, LiteRT logs its accelerators' destruction on fd 2: point fd 2 at /dev/null for the rest of the
    shutdown, with Python's own stderr moved to a copy of the real one (tracebacks and messages still show)."""
    try:
        sys.stderr.flush()
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _litert_error(log: list[str]) -> str:
    errors = [ln for ln in log if "ERROR" in ln]
    return errors[-1].strip()[:200] if errors else ""


def _litert(path: Path, spec: ArtifactEntry, threads: int | None, component: str, cache: WeightCache,
            flags: int | None = None):
    import ai_edge_litert
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.environment import Environment, EnvironmentOptions
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, Options

    log: list[str] = []
    if not _ENVIRONMENT:
        with _quiet_stderr(log):
            _ENVIRONMENT.append(Environment.create(options=EnvironmentOptions(
                runtime_path=os.path.dirname(os.path.abspath(ai_edge_litert.__file__)))))
        atexit.register(_quiet_native_exit)

    def compile_model(cache_path: str):
        # XNNPACK packs the weights (or maps them from the cache file) here, not in the first call
        options = Options(hardware_accelerators=HardwareAccelerator.CPU,
                          cpu_options=CpuOptions(num_threads=threads or 1, xnnpack_weight_cache_path=cache_path,
                                                 xnnpack_flags=flags))
        with _quiet_stderr(log):
            try:
                return CompiledModel.from_file(str(path), environment=_ENVIRONMENT[0], options=options)
            except Exception as exc:  # noqa: BLE001 - one line with LiteRT's own reason
                detail = _litert_error(log) or str(exc).splitlines()[0][:200]
                raise EdgegenError(f"{path}: the litert runtime cannot load it ({detail})") from None

    model, use = load_with_cache(compile_model, cache.file(component, spec.sha256))
    # the file pages XNNPACK read while packing are dropped at once, so the next artifact loads beside packed
    # weights only (with a cache hit it read none)
    release_file_pages(path)
    signatures = model.get_signature_list()
    if len(signatures) != 1:
        raise EdgegenError(f"{path}: has {len(signatures)} signatures, edgegen's artifacts have one; re-export it")
    key, sig = next(iter(signatures.items()))
    names = [i.name for i in call_order(spec.inputs)]
    if sorted(sig["inputs"]) != sorted(names):
        raise EdgegenError(f"{path}: its inputs {sorted(sig['inputs'])} are not the manifest's {sorted(names)}")
    out_keys = litert_output_keys(dict.fromkeys(sig["outputs"]), [o.name for o in spec.outputs])
    details = model.get_output_tensor_details(key)
    outs = [(k, np.dtype(details[k]["dtype"]), tuple(details[k]["shape"])) for k in out_keys]
    in_buffers = {n: model.create_input_buffer_by_name(key, n) for n in names}
    out_buffers = {k: model.create_output_buffer_by_name(key, k) for k in out_keys}
    with _quiet_stderr(log):  # the wheel's first buffer write makes (and logs) an environment of its own
        for i in call_order(spec.inputs):
            in_buffers[i.name].write(np.zeros(i.shape, dtype=_NP[i.dtype]))
    called = []

    def call(arrays):
        for name, a in zip(names, arrays):
            in_buffers[name].write(a)
        model.run_by_name(key, in_buffers, out_buffers)
        if not called:  # the few tensors XNNPACK does not pack, read by the first call
            called.append(release_file_pages(path))
        return [out_buffers[k].read(int(np.prod(shape)), dtype).reshape(shape) for k, dtype, shape in outs]

    return call, use


def release_file_pages(path: Path) -> int:
    """Drop this process's resident pages of `path`'s read-only file mappings; returns the bytes advised.

    The LiteRT interpreter maps its .tflite file; XNNPACK reads every weight once to pack its own copy, and those
    file pages then stay resident, so each weight counts twice in RSS (measured on SAO-small's int8 bundle: 808 MB
    of file pages beside the packed weights). ExecuTorch's loader maps parts of a .pte too, mlocked, so a mapping
    is unlocked before its pages are dropped. MADV_DONTNEED on a file mapping only drops the pages: anything that
    reads them later faults them back in from the file, so results are unchanged (tested); XNNPACK does not read
    them again. Linux only (/proc/self/maps); elsewhere a no-op returning 0."""
    import ctypes

    target = str(Path(path).resolve())
    try:
        with open("/proc/self/maps") as f:
            spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f
                     if line.rstrip("\n").split(maxsplit=5)[-1] == target and line.split()[1].startswith("r")]
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    MADV_DONTNEED = 4
    # MADV_DONTNEED refuses locked pages: unlock first
    return sum(hi - lo for lo, hi in spans
               if libc.munlock(lo, hi - lo) == 0 and libc.madvise(lo, hi - lo, MADV_DONTNEED) == 0)


def litert_output_keys(result: dict, names: list[str]) -> list[str]:
    """The signature's output keys in manifest order: by name when the converter kept names, else output_i."""
    if all(n in result for n in names):
        return names
    ordered = [f"output_{i}" for i in range(len(names))]
    if all(k in result for k in ordered):
        return ordered
    raise EdgegenError(f"LiteRT outputs {sorted(result)} cannot be matched to the manifest's {names}")


def load_artifacts(bundle: Bundle, *, threads: int | None = None, components: tuple[str, ...] | None = None,
                   weight_cache: WeightCache | None = None) -> dict[str, Artifact]:
    """The bundle's artifacts (or only `components`), each loaded in the bundle's runtime. `weight_cache`: LiteRT's
    XNNPACK weight cache (None: off; `WeightCache.resolve(None)` is the default folder)."""
    weight_cache = weight_cache or WeightCache.off()
    fp16 = fp16_arithmetic(read_cpuinfo())
    if threads and bundle.backend == "executorch":
        _set_executorch_threads(threads)  # one process-wide XNNPACK pool
    wanted = components or bundle.components
    out = {}
    # largest file first: while an artifact loads, its file's pages sit beside the weights already packed, so the
    # smallest file last gives the lowest peak (LiteRT drops each file's pages once its weights are packed)
    for comp in sorted(wanted, key=lambda c: -bundle.manifest.artifacts[c].size):  # checked at open
        spec = bundle.manifest.artifacts[comp]
        start = time.perf_counter()
        try:
            if bundle.backend == "litert":  # the target profile's XNNPACK flags, FORCE_FP16 for an fp16 artifact
                flags, precision = litert_settings(bundle.manifest, comp, fp16)
                # LiteRT 2.3's XNNPACK aborts packing FORCE_FP16 weights into a cache file (the native runner's
                # weight_cache.cpp): an fp16 artifact loads without one
                cache = WeightCache.off() if precision == "fp16" else weight_cache
                call, use = _litert(bundle.path(comp), spec, threads, comp, cache, flags)
            else:  # cast to half at export where the profile asks for fp16
                precision = computes_in(bundle.manifest, comp, fp16)
                call, use = _executorch(bundle.path(comp), spec, threads, comp, weight_cache)
        except EdgegenError:
            raise
        except Exception as exc:
            raise EdgegenError(f"{bundle.path(comp)}: the {bundle.backend} runtime cannot load it "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        out[comp] = Artifact(spec, call, load_s=time.perf_counter() - start, weight_cache=use, precision=precision)
    return {comp: out[comp] for comp in wanted}


def release_memory() -> None:
    """Hand freed heap back to the OS after an artifact is dropped (glibc only; elsewhere a no-op)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
