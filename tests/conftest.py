from pathlib import Path

import pytest

import edgegen
from tests.helpers import RUNNERS_DIR, write_official, write_t5_folder


@pytest.fixture(scope="session", autouse=True)
def _weight_cache_in_tmp(tmp_path_factory):
    """The native runner's XNNPACK weight cache (default ~/.cache/edgegen/xnnpack) goes to this session's temp
    folder, so tests neither read a cache left by another run nor leave files in the home folder."""
    import os

    old = os.environ.get("EDGEGEN_WEIGHT_CACHE")
    os.environ["EDGEGEN_WEIGHT_CACHE"] = str(tmp_path_factory.mktemp("xnnpack-cache"))
    yield
    if old is None:
        os.environ.pop("EDGEGEN_WEIGHT_CACHE", None)
    else:
        os.environ["EDGEGEN_WEIGHT_CACHE"] = old


@pytest.fixture(scope="session")
def tiny():
    return edgegen.load_pipeline("random:tiny")


@pytest.fixture(scope="session")
def tiny_dirs(tiny, tmp_path_factory) -> tuple[Path, Path]:
    """(model_dir, t5_dir): random:tiny written in the official layout plus a Hugging Face T5 folder."""
    root = tmp_path_factory.mktemp("tiny_official")
    return write_official(tiny, root / "model"), write_t5_folder(tiny, root / "t5")


@pytest.fixture(scope="session")
def bundle_factory(tiny, tmp_path_factory):
    """export(backend, recipe, components=the three, target=None) -> bundle path; each combination is exported once
    per session. components=AUDIO_TO_AUDIO adds the encoder (`export --audio-to-audio`)."""
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    cache: dict = {}
    root = tmp_path_factory.mktemp("bundles")

    def export(backend: str, recipe: str, components=("text_encoder", "dit", "decoder"), target=None):
        key = (backend, recipe, tuple(components), target)
        if key not in cache:
            out = root / f"{backend}-{recipe}-{len(cache)}"
            export_bundle(tiny, target=load_target(target or f"host-{backend}"), recipe=load_recipe(recipe),
                          out=out, components=tuple(components))
            cache[key] = out
        return cache[key]

    return export


@pytest.fixture(scope="session")
def host_runner() -> Path:
    """The host-built edgegen-runner (both backends; libLiteRt.so beside it), built once per session."""
    from edgegen.runner_build import build_runner

    return build_runner(target="host", out_dir=RUNNERS_DIR / "host", log=lambda _: None)


@pytest.fixture(scope="session")
def portable_runner() -> Path:
    """The android-arm64-portable runner folder (launcher, bin/, lib/ with glibc's loader), built once per session."""
    from edgegen.runner_build import PORTABLE, build_runner

    return build_runner(target=PORTABLE, out_dir=RUNNERS_DIR / "portable", log=lambda _: None).parent


@pytest.fixture(scope="session")
def tiny_long():
    return edgegen.load_pipeline("random:tiny-long")


def _streamed_bundles(pipe, tmp_path_factory, mode: str):
    from edgegen.export import export_bundle
    from edgegen.recipes import load_recipe, load_target

    cache = {}

    def get(backend: str):
        if backend not in cache:
            out = tmp_path_factory.mktemp(f"streamed-{mode}") / backend
            export_bundle(pipe, target=load_target(f"host-{backend}"), recipe=load_recipe("fp32"), out=out,
                          decoder_stream=mode)
            cache[backend] = out
        return cache[backend]

    return get


@pytest.fixture(scope="session")
def streamed(tiny_long, tmp_path_factory):
    """backend -> an overlapped-window streamed (schema 2) fp32 bundle of random:tiny-long (exported once)."""
    return _streamed_bundles(tiny_long, tmp_path_factory, "overlap")


@pytest.fixture(scope="session")
def stateful(tiny_long, tmp_path_factory):
    """backend -> a stateful streamed (schema 3, the default) fp32 bundle of random:tiny-long (exported once)."""
    return _streamed_bundles(tiny_long, tmp_path_factory, "stateful")
