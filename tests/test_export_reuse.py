"""EDGEGEN_EXPORT_CACHE (edgegen.export.reuse): an artifact lowered once is copied, not lowered again, when every
input of its lowering is the same; any change of weights, structure, rules, target or stream lowers anew."""

import copy
import json
from pathlib import Path

import pytest
import torch

from edgegen.export import export_bundle
from edgegen.export.reuse import ENV, ArtifactCache
from edgegen.recipes import load_recipe, load_target
from tests.helpers import assert_one_error, invoke_cli


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(ENV, str(root))
    return root


def _fake_backend(monkeypatch, calls: list):
    """litert's export_component replaced by one that counts its calls and writes their number."""
    def export_component(component, module, example_inputs, path, *, rules, on_stage):
        calls.append(component)
        on_stage("serialize")
        Path(path).write_bytes(f"artifact {len(calls)}".encode())
        return {"*": "fp32"}, 0.5

    monkeypatch.setattr("edgegen.export.litert.export_component", export_component)


def _export(pipe, out, *, recipe="fp32", target="host-litert", components=("dit",), **kw):
    stages = []
    export_bundle(pipe, target=load_target(target), recipe=load_recipe(recipe), out=out, components=components,
                  verify=False, progress=lambda comp, stage: stages.append(stage), **kw)
    return stages


def test_the_same_lowering_is_copied_and_any_change_lowers_again(tiny, tmp_path, cache, monkeypatch):
    calls = []
    _fake_backend(monkeypatch, calls)
    _export(tiny, tmp_path / "a")
    stages = _export(tiny, tmp_path / "b")
    assert calls == ["dit"] and stages == [f"reused from {cache}"]
    assert (tmp_path / "b" / "dit.tflite").read_bytes() == b"artifact 1"
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())["artifacts"]["dit"]
    assert manifest["delegated_fraction"] == 0.5 and manifest["schemes"] == {"fp32": 1}

    changed = copy.deepcopy(tiny)
    with torch.no_grad():
        next(changed.dit.parameters()).view(-1)[0] += 1e-3
    _export(changed, tmp_path / "weights")
    _export(tiny, tmp_path / "rules", recipe="int8")
    _export(tiny, tmp_path / "target", target="android-arm64-litert")
    heads = copy.deepcopy(tiny)  # same weights, another function: the structure is part of the key
    for m in heads.dit.modules():
        if hasattr(m, "heads"):
            m.heads, m.head_dim = m.heads * 2, m.head_dim // 2
    _export(heads, tmp_path / "heads")
    assert len(calls) == 5
    _export(tiny, tmp_path / "verbose", verbose=True)  # --verbose shows the converter: it converts
    assert len(calls) == 6


def test_a_damaged_entry_is_lowered_again(tiny, tmp_path, cache, monkeypatch):
    calls = []
    _fake_backend(monkeypatch, calls)
    _export(tiny, tmp_path / "a")
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    (entry / "dit.tflite").write_bytes(b"bit rot")
    _export(tiny, tmp_path / "b")
    assert len(calls) == 2 and (tmp_path / "b" / "dit.tflite").read_bytes() == b"artifact 2"
    _export(tiny, tmp_path / "c")  # the new entry replaced the damaged one
    assert len(calls) == 2 and (tmp_path / "c" / "dit.tflite").read_bytes() == b"artifact 2"


def test_stream_settings_are_part_of_the_key(tiny_long, tmp_path):
    cache = ArtifactCache(tmp_path)
    key = lambda stream: cache.key(backend="litert", component="decoder", module=tiny_long.decoder,  # noqa: E731
                                   weights={}, example=(torch.zeros(1, 64, 8),), target=load_target("host-litert"),
                                   rules=(), stream=stream)
    assert len({key(None), key({"mode": "stateful", "window": 8}), key({"mode": "stateful", "window": 16})}) == 3


@pytest.mark.litert
def test_a_reused_artifact_verifies_like_a_new_one(tiny, tmp_path, cache, monkeypatch):
    """Real LiteRT: the second export copies the first's text encoder byte for byte, and its verification (the
    artifact run against the reference) passes as the first's did."""
    first = export_bundle(tiny, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=tmp_path / "a",
                          components=("text_encoder",))
    monkeypatch.setattr("edgegen.export.litert.export_component", lambda *a, **k: pytest.fail("lowered again"))
    second = export_bundle(tiny, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=tmp_path / "b",
                           components=("text_encoder",))
    read = lambda folder: (tmp_path / folder / "text_encoder.tflite").read_bytes()  # noqa: E731
    assert read("a") == read("b")
    figures = lambda report: {k: v for k, v in report.verification.items() if k != "seconds_taken"}  # noqa: E731
    assert first.verification["verified"] and figures(second) == figures(first)


@pytest.mark.parametrize("inside", [False, True])
def test_a_cache_that_is_not_a_folder_is_one_error_line(tmp_path, monkeypatch, inside):
    """EDGEGEN_EXPORT_CACHE naming a file (or a folder under one) stops `edgegen export` before any work: one line
    naming the variable, exit 2, no bundle."""
    (tmp_path / "cache").write_text("not a folder")
    bad = tmp_path / "cache" / "sub" if inside else tmp_path / "cache"
    monkeypatch.setenv(ENV, str(bad))
    calls = []
    _fake_backend(monkeypatch, calls)
    res = invoke_cli("export", "-m", "random:tiny", "-t", "host-litert", "-r", "fp32", "-c", "dit",
                     "-o", str(tmp_path / "out"))
    assert_one_error(res, f"{ENV}={bad}: cannot make that folder")
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
