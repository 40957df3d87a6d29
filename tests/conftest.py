import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

import edgegen
from tests.helpers import RUNNERS_DIR, write_official, write_t5_folder


@pytest.fixture(scope="session", autouse=True)
def _weight_cache_in_tmp(tmp_path_factory):
    """The native runner's XNNPACK weight cache (default ~/.cache/edgegen/xnnpack) goes to this session's temp
    folder, so tests neither read a cache left by another run nor leave files in the home folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEGEN_WEIGHT_CACHE", str(tmp_path_factory.mktemp("xnnpack-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _export_cache(shared_dir):
    """Exports of this run share their lowerings (edgegen.export.reuse, EDGEGEN_EXPORT_CACHE): a test exporting a
    component another test already lowered from the same weights, rules and target copies that artifact (and still
    verifies it). A test about lowering itself takes the `fresh_lowering` fixture."""
    from edgegen.export.reuse import ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(shared_dir / "export-cache"))
        yield


@pytest.fixture
def fresh_lowering(monkeypatch):
    """This test's exports lower every component (no reuse of the run's earlier lowerings)."""
    from edgegen.export.reuse import ENV

    monkeypatch.delenv(ENV, raising=False)


def pytest_configure(config):
    """Under pytest-xdist (scripts/test.sh runs two workers) each worker computes on one thread: two workers on two
    cores, not four threads fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run sees (the base temp folder without one): where session fixtures put
    what one worker made for all (`made_once`)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(exist_ok=True)
    return root


@contextmanager
def locked(path: Path):
    """Hold the lock named `path` (the file `path`.lock) across workers for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def made_once(path: Path):
    """Hold `path`'s lock; yields True when `path` is still to be made (the caller makes it, or leaves nothing there
    on failure), False when another worker or an earlier call made it."""
    with locked(path):
        yield not path.exists()


@pytest.fixture(scope="session")
def tiny():
    return edgegen.load_pipeline("random:tiny")


@pytest.fixture(scope="session")
def tiny_dirs(tiny, tmp_path_factory) -> tuple[Path, Path]:
    """(model_dir, t5_dir): random:tiny written in the official layout plus a Hugging Face T5 folder."""
    root = tmp_path_factory.mktemp("tiny_official")
    return write_official(tiny, root / "model"), write_t5_folder(tiny, root / "t5")


@pytest.fixture(scope="session")
def bundle_factory(tiny, shared_dir):
    """export(backend, recipe, components=the three, target=None) -> bundle path (read-only); each combination is
    exported once per run, by whichever worker asks first. components=AUDIO_TO_AUDIO adds the encoder
    (`export --audio-to-audio`)."""
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    root = shared_dir / "bundles"
    root.mkdir(exist_ok=True)

    def export(backend: str, recipe: str, components=("text_encoder", "dit", "decoder"), target=None):
        target = target or f"host-{backend}"
        out = root / f"{backend}-{recipe}-{'+'.join(components)}-{target}"
        with made_once(out) as missing:
            if missing:  # export_bundle writes beside and renames: a failed export leaves no folder
                export_bundle(tiny, target=load_target(target), recipe=load_recipe(recipe), out=out,
                              components=tuple(components))
        return out

    return export


def _runner_once(shared_dir: Path, target: str, folder: str) -> Path:
    """Build the runner for `target` into RUNNERS_DIR/`folder` once per run: a second worker waits for the first and
    uses its binary (a second build would relink a binary the first may be running). One build at a time: the
    targets share the SDK caches under ~/.cache/edgegen. Returns build_runner's path."""
    from edgegen.runner_build import build_runner

    done = shared_dir / f"runner-{folder}"
    with made_once(done) as missing:
        if missing:
            with locked(RUNNERS_DIR / "build"):
                path = build_runner(target=target, out_dir=RUNNERS_DIR / folder, log=lambda _: None)
            done.write_text(str(path))
    return Path(done.read_text())


@pytest.fixture(scope="session")
def host_runner(shared_dir) -> Path:
    """The host-built edgegen-runner (both backends; libLiteRt.so beside it), built once per run."""
    return _runner_once(shared_dir, "host", "host")


@pytest.fixture(scope="session")
def portable_runner(shared_dir) -> Path:
    """The android-arm64-portable runner folder (launcher, bin/, lib/ with glibc's loader), built once per run."""
    from edgegen.runner_build import PORTABLE

    return _runner_once(shared_dir, PORTABLE, "portable").parent


@pytest.fixture(scope="session")
def aarch64_python() -> Path:
    """tests/aarch64_python.py's interpreter folder, made once per machine under ~/.cache/edgegen (a few MB)."""
    from tests import aarch64_python as a64

    dest = RUNNERS_DIR.parent / "aarch64-python" / a64.key()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with made_once(dest) as missing:
        if missing:
            a64.make(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_long():
    return edgegen.load_pipeline("random:tiny-long")


def _streamed_bundles(pipe, shared_dir, mode: str):
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    def get(backend: str):
        out = shared_dir / f"streamed-{mode}-{backend}"
        with made_once(out) as missing:
            if missing:
                export_bundle(pipe, target=load_target(f"host-{backend}"), recipe=load_recipe("fp32"), out=out,
                              decoder_stream=mode)
        return out

    return get


@pytest.fixture(scope="session")
def streamed(tiny_long, shared_dir):
    """backend -> an overlapped-window streamed (schema 2) fp32 bundle of random:tiny-long (exported once per run)."""
    return _streamed_bundles(tiny_long, shared_dir, "overlap")


@pytest.fixture(scope="session")
def stateful(tiny_long, shared_dir):
    """backend -> a stateful streamed (schema 3, the default) fp32 bundle of random:tiny-long (exported once per
    run)."""
    return _streamed_bundles(tiny_long, shared_dir, "stateful")


@pytest.fixture(scope="session")
def int8_stateful_decoder(tiny_long, shared_dir) -> Path:
    """A bundle holding only random:tiny-long's stateful ExecuTorch decoder with every layer int8 (XNNPACK's
    dynamically quantized 2-D convolutions, the kernels `fast` uses), unverified; exported once per run (~1 s of
    lowering per convolution)."""
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    out = shared_dir / "int8-stateful-decoder-executorch"
    with made_once(out) as missing:
        if missing:
            recipe = shared_dir / "int8-decoder.toml"
            recipe.write_text('name = "int8-decoder"\n' + "".join(
                f'[components.{c}]\nsqnr_floor_db = 10.0\n'
                f'rules = [{{ pattern = "*", scheme = "{"int8" if c == "decoder" else "fp32"}" }}]\n'
                for c in ("text_encoder", "dit", "decoder")))
            export_bundle(tiny_long, target=load_target("host-executorch"), recipe=load_recipe(recipe), out=out,
                          components=("decoder",), verify=False)
    return out
