"""Load a bundle's artifacts in their own runtime and call them by input name.

    arts = load_artifacts(bundle, threads=2)
    cross, glob = arts["text_encoder"](token_ids=..., attention_mask=..., seconds_total=...)

Each artifact takes numpy or torch inputs keyed by the manifest's input names, checks dtype and shape
against the manifest, and returns torch tensors in the manifest's output order.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edgegen.bundle import Bundle, call_order
from edgegen.errors import EdgegenError

_NP = {"float32": np.float32, "int32": np.int32}


class Artifact:
    def __init__(self, spec: dict, call, *, load_s: float):
        self.spec, self._call, self.load_s = spec, call, load_s
        self.inputs = call_order(spec["inputs"])
        self.input_names = [i["name"] for i in self.inputs]

    def __call__(self, **inputs) -> tuple[torch.Tensor, ...]:
        if sorted(inputs) != sorted(self.input_names):
            raise EdgegenError(f"inputs {sorted(inputs)} do not match the artifact's {self.input_names}")
        arrays = []
        for i in self.inputs:
            a = inputs[i["name"]]
            a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
            a = np.ascontiguousarray(a, dtype=_NP[i["dtype"]])
            if list(a.shape) != list(i["shape"]):
                raise EdgegenError(f"input {i['name']} has shape {list(a.shape)}, the artifact takes {i['shape']}")
            arrays.append(a)
        return tuple(torch.as_tensor(np.asarray(o)) for o in self._call(arrays))


def _executorch(path: Path, spec: dict, threads: int | None):
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    # what the runtime maps of the .pte (the text encoder's: 96 MB, mlocked) XNNPACK has packed by now or reads
    # rarely: drop those pages as for LiteRT (anything read later faults back in from the file)
    release_file_pages(path)
    return lambda arrays: method.execute([torch.from_numpy(a) for a in arrays])


def _set_executorch_threads(threads: int) -> None:
    try:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(threads)
    except (ImportError, AttributeError):
        pass  # older wheels: XNNPACK uses its default pool size


def _litert(path: Path, spec: dict, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads or 1)
    # XNNPACK packs its own copy of the weights while tensors are allocated (here, not in the first call): the
    # file pages it read are dropped at once, so the next artifact loads beside packed weights only
    interp.allocate_tensors()
    release_file_pages(path)
    runner = interp.get_signature_runner()
    names = [i["name"] for i in call_order(spec["inputs"])]
    out_names = [o["name"] for o in spec["outputs"]]
    called = []

    def call(arrays):
        result = runner(**dict(zip(names, arrays)))
        if not called:  # the few tensors XNNPACK does not pack, read by the first call
            called.append(release_file_pages(path))
        return [result[k] for k in litert_output_keys(result, out_names)]

    return call


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


def load_artifacts(bundle: Bundle, *, threads: int | None = None,
                   components: tuple[str, ...] | None = None) -> dict[str, Artifact]:
    """The bundle's artifacts (or only `components`), each loaded in the bundle's runtime."""
    loader = _executorch if bundle.backend == "executorch" else _litert
    if threads and bundle.backend == "executorch":
        _set_executorch_threads(threads)  # one process-wide XNNPACK pool
    wanted = components or bundle.components
    out = {}
    # largest file first: while an artifact loads, its file's pages sit beside the weights already packed, so the
    # smallest file last gives the lowest peak (LiteRT drops each file's pages once its weights are packed)
    for comp in sorted(wanted, key=lambda c: -bundle.manifest["artifacts"][c]["size"]):  # checked at open
        spec = bundle.manifest["artifacts"][comp]
        start = time.perf_counter()
        try:
            call = loader(bundle.path(comp), spec, threads)
        except EdgegenError:
            raise
        except Exception as exc:
            raise EdgegenError(f"{bundle.path(comp)}: the {bundle.backend} runtime cannot load it "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        out[comp] = Artifact(spec, call, load_s=time.perf_counter() - start)
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
