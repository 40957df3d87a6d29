"""Weights resident once in the Python LiteRT path: once XNNPACK has packed its copy (while the artifact loads), the
.tflite file's pages are dropped from the process (`runtime.release_file_pages`); results do not change."""

import numpy as np
import pytest

from edgegen.bundle import open_bundle
from edgegen.runtime import load_artifacts, release_file_pages
from edgegen.export.wrappers import example_inputs


def _resident_kb(path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    target, total, inside = str(path.resolve()), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = head[-1] == target
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


@pytest.fixture(scope="module")
def wide_decoder(tmp_path_factory):
    """(pipeline, bundle) of random:tiny with a 4x wider VAE decoder (a 20 MB fp32 decoder.tflite, decoder only).

    The kernel maps file pages back in large folios (on 6.18 / ext4, 1-2 MB come back around the few bytes LiteRT
    reads again, whatever the file's size), so the check needs a file well above that; random:tiny's 1.6 MB
    decoder is not."""
    import copy

    import edgegen
    from edgegen import presets
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    cfg, t5 = presets.PRESETS["tiny"]
    cfg = copy.deepcopy(cfg)
    cfg["model"]["pretransform"]["config"]["decoder"]["config"]["channels"] = 32
    presets.PRESETS["tiny-wide-decoder"] = (cfg, t5)
    try:
        pipe = edgegen.load_pipeline("random:tiny-wide-decoder")
    finally:
        del presets.PRESETS["tiny-wide-decoder"]
    out = tmp_path_factory.mktemp("wide") / "bundle"
    export_bundle(pipe, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=out,
                  components=("decoder",))
    return pipe, open_bundle(out)


@pytest.mark.litert
def test_litert_weights_held_once(wide_decoder):
    """The fp32 decoder (every weight a convolution XNNPACK packs): its file pages leave once it is loaded and
    stay out (measured: 2 of its 20 MB come back, the large folios around what LiteRT reads again; on SAO-small's
    int8 DiT 3 of 345 MB)."""
    pipe, bundle = wide_decoder
    path = bundle.path("decoder")
    size_kb = path.stat().st_size // 1024
    assert size_kb > 16 << 10
    first = load_artifacts(bundle, threads=1, components=("decoder",))["decoder"]
    assert _resident_kb(path) < 64  # packed while loading, its pages dropped then: the next artifact loads beside less
    (latents,) = example_inputs(pipe, "decoder")
    out1 = first(latents=latents)[0]
    assert _resident_kb(path) < 64  # was the whole file (XNNPACK read every weight to pack it)
    out2 = first(latents=latents)[0]
    assert _resident_kb(path) < size_kb // 4  # XNNPACK does not read them again (the whole file if it did)
    fresh = load_artifacts(bundle, threads=1, components=("decoder",))["decoder"]
    ref = fresh(latents=latents)[0]
    assert np.array_equal(out1, ref) and np.array_equal(out2, ref)


def test_release_file_pages_on_a_plain_mapping(tmp_path):
    """The helper itself: a read-only mapping of a touched file loses its resident pages, its bytes stay readable."""
    import mmap

    path = tmp_path / "w.bin"
    data = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        assert m[:] == data  # touch every page
        assert _resident_kb(path) >= 8 << 10
        assert release_file_pages(path) >= 8 << 20
        assert _resident_kb(path) == 0
        assert m[:] == data  # faulted back in from the file
        m.close()
    assert release_file_pages(tmp_path / "not-mapped") == 0


def test_release_file_pages_on_a_locked_mapping(tmp_path):
    """ExecuTorch's loader mlocks the part of a .pte it maps: the helper unlocks it, so its pages leave too."""
    import ctypes
    import mmap

    path = tmp_path / "w.bin"
    data = np.random.default_rng(1).integers(0, 255, 4 << 20, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        view = np.frombuffer(m, dtype=np.uint8)
        try:
            if libc.mlock(view.ctypes.data, len(data)) != 0:
                pytest.skip("mlock not permitted here (RLIMIT_MEMLOCK)")
            assert _resident_kb(path) >= 4 << 10
            assert release_file_pages(path) >= 4 << 20
            assert _resident_kb(path) == 0
            assert bytes(view) == data
        finally:
            del view  # the mapping cannot close while a view of it exists
