"""`edgegen train` on bad input: one `edgegen: error:` line, exit status 2, nothing run from a file, nothing left.

Almost every case fails before a model is built or a step is trained, so the whole file runs in seconds."""

import json
import os
import pickle
import shutil
import stat
from pathlib import Path

import pytest
import torch

from edgegen.errors import EdgegenError
from edgegen.train import loop, store
from tests.helpers import assert_one_error, invoke_cli, run_cli


class Payload:
    """Unpickling this creates `marker` (a stand-in for any code a crafted file could run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def crafted(path: Path, marker: Path, *, zip_format: bool) -> Path:
    """A file that runs code when unpickled: torch.save's zip format (edgegen's old caches and states) or a bare
    pickle. Both are the sort of thing `torch.load(weights_only=False)` executed."""
    tree = {"latents": Payload(marker), "step": 3, "kind": "rf"}
    if zip_format:
        torch.save(tree, path)
    else:
        path.write_bytes(pickle.dumps(tree))
    return path


def run_payload(path: Path, *, zip_format: bool) -> None:
    """Load `path` the unsafe way edgegen used to (torch 2.13 reads a *.safetensors name as safetensors: copy it)."""
    if zip_format:
        shutil.copy(path, path.with_name("unsafe.pt"))
        torch.load(path.with_name("unsafe.pt"), weights_only=False)
    else:
        pickle.loads(path.read_bytes())


def fake_cache(path: Path, *, frames: int = 16, n: int = 4) -> Path:
    """A valid random:tiny latent cache written directly (no VAE pass): latents [n, 64, frames]."""
    store.save_tree(path, {"latents": torch.randn(n, 64, frames), "cond_index": torch.zeros(n, dtype=torch.int64),
                           "cross": torch.randn(1, 65, 32), "glob": torch.randn(1, 32), "captions": ["x"],
                           "seconds": [0.5], "labels": [None] * n, "paths": [f"{i}.wav" for i in range(n)]},
                    kind=store.CACHE)
    return path


# --- 17.1: a cache or state file never runs code ------------------------------------------------------------

@pytest.mark.parametrize("command", ["rf", "arc"])
@pytest.mark.parametrize("zip_format", [True, False], ids=["torch.save", "pickle"])
def test_crafted_cache_is_refused_unopened(tmp_path, command, zip_format):
    marker, out = tmp_path / "marker", tmp_path / "run"
    cache = crafted(tmp_path / "cache.safetensors", marker, zip_format=zip_format)
    assert_one_error(invoke_cli("train", command, "-m", "random:tiny", "--cache", cache, "--out", out, "--steps", 1),
                     str(cache), "pickle", "edgegen train cache")
    assert not marker.exists() and not out.exists()
    run_payload(cache, zip_format=zip_format)  # the file really is hostile: loading it the old way runs its code
    assert marker.exists()


@pytest.mark.parametrize("name", ["state.safetensors", "state.pt"])
@pytest.mark.parametrize("resume", [True, False])
def test_crafted_state_is_refused_unopened(tmp_path, name, resume):
    marker, out = tmp_path / "marker", tmp_path / "run"
    out.mkdir()
    crafted(out / name, marker, zip_format=name.endswith(".pt"))
    before = sorted(p.name for p in out.iterdir())
    args = ["rf", "-m", "random:tiny", "--cache", tmp_path / "none", "--out", out, "--steps", 1]
    assert_one_error(invoke_cli("train", *args, *(["--resume"] if resume else [])), str(out / name), "new --out")
    assert not marker.exists()
    assert sorted(p.name for p in out.iterdir()) == before  # a folder that existed stays, untouched
    run_payload(out / name, zip_format=name.endswith(".pt"))
    assert marker.exists()


def test_crafted_cache_through_the_real_command(tmp_path):
    """The installed entry point end to end (a separate process): one line, exit 2, the payload never ran."""
    marker = tmp_path / "marker"
    cache = crafted(tmp_path / "cache.pt", marker, zip_format=True)
    assert_one_error(run_cli("train", "arc", "-m", "random:tiny", "--cache", cache, "--out", tmp_path / "run",
                             "--steps", "1", timeout=300), "pickle")
    assert not marker.exists() and not (tmp_path / "run").exists()
    run_payload(cache, zip_format=True)
    assert marker.exists()


def test_store_round_trip_and_refusals(tmp_path):
    tree = {"a": torch.arange(3), "b": (1, 2.5, None, "x"), 0: [True, {"c": torch.ones(2, 2)}], "nan": float("nan")}
    got = store.load_tree(store.save_tree(tmp_path / "t.st", tree, kind="k/1"), kind="k/1", what="test", remedy="r")
    assert got["b"] == (1, 2.5, None, "x") and isinstance(got["b"], tuple) and got[0][0] is True
    assert torch.equal(got["a"], tree["a"]) and torch.equal(got[0][1]["c"], torch.ones(2, 2))
    assert got["nan"] != got["nan"]
    with pytest.raises(EdgegenError, match="holds 'k/1'.*; r$"):
        store.load_tree(tmp_path / "t.st", kind="other/1", what="test", remedy="r")
    (tmp_path / "junk").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(EdgegenError, match="not a safetensors file"):
        store.load_tree(tmp_path / "junk", kind="k/1", what="test", remedy="r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk", "t.st"]  # no temporary file left beside them


def test_damaged_cache_is_one_line(tmp_path):
    path = tmp_path / "c.safetensors"
    store.save_tree(path, {"latents": torch.randn(2, 64, 16), "cond_index": torch.tensor([0, 5]),
                           "cross": torch.randn(1, 65, 32), "glob": torch.randn(1, 32), "captions": ["x"],
                           "seconds": [0.5], "labels": [None, None], "paths": ["a", "b"]}, kind=store.CACHE)
    assert_one_error(invoke_cli("train", "rf", "-m", "random:tiny", "--cache", path, "--out", tmp_path / "run",
                                "--steps", 1), "damaged latent cache", "cond_index")
    assert not (tmp_path / "run").exists()


# --- 17.8 / 17.9: bad settings name the option, its value and what is allowed ----------------------------------

RF = ["rf", "-m", "random:tiny", "--steps", "1"]
ARC = ["arc", "-m", "random:tiny", "--steps", "1"]


@pytest.mark.parametrize("args, needles", [
    (RF + ["--lr", "nan"], ["--lr nan", "finite number > 0"]),
    (RF + ["--lr", "inf"], ["--lr inf", "finite"]),
    (RF + ["--lr", "-1e-3"], ["--lr -1e-3", "> 0"]),
    (RF + ["--ema-beta", "2"], ["--ema-beta 2", "[0, 1)"]),
    (ARC + ["--ema-beta", "nan"], ["--ema-beta nan", "[0, 1)"]),
    (ARC + ["--contrastive-weight", "nan"], ["--contrastive-weight nan", ">= 0"]),
    (ARC + ["--contrastive-weight", "-1"], ["--contrastive-weight -1", ">= 0"]),
    (ARC + ["--lr", "abc"], ["--lr abc", "finite number"]),
    (RF[:-2] + ["--steps", "0"], ["--steps 0", "integer >= 1"]),
    (RF + ["--batch-size", "0"], ["--batch-size 0", "integer >= 1"]),
    (RF + ["--save-every", "2.5"], ["--save-every 2.5", "integer"]),
    (ARC + ["--hidden-layer", "-1"], ["--hidden-layer -1", "integer >= 0"]),
    (ARC + ["--lr-discriminator", "nan"], ["--lr-discriminator nan", "finite number > 0"]),
    (ARC + ["--lr-discriminator", "0"], ["--lr-discriminator 0", "> 0"]),
    (ARC + ["--disc-warmup-steps", "-1"], ["--disc-warmup-steps -1", "integer >= 0"]),
    (ARC + ["--disc-warmup-steps", "1.5"], ["--disc-warmup-steps 1.5", "integer"]),
    (ARC + ["--batch-size", "1"], ["batch size 1", "--batch-size", "--contrastive-weight 0"]),
    (RF + ["--dit", "127,2,2"], ["--dit 127,2,2", "WIDTH 127", "multiple of HEADS 2"]),
    (RF + ["--dit", "64,2,4"], ["--dit 64,2,4", "heads of 16 channels"]),
    (RF + ["--dit", "128,0,2"], ["--dit 128,0,2", "DEPTH 0"]),
    (RF + ["--dit", "128,4"], ["--dit 128,4", "WIDTH,DEPTH,HEADS"]),
    (RF + ["--resume"], ["--resume", "no saved run", "drop --resume"]),
    (ARC + ["--resume"], ["--resume", "no saved run"]),
])
def test_bad_settings_one_line_nothing_created(tmp_path, args, needles):
    out = tmp_path / "runs" / "new"
    assert_one_error(invoke_cli("train", *args, "--cache", tmp_path / "none.safetensors", "--out", out), *needles)
    assert not (tmp_path / "runs").exists()


def test_checks_that_need_the_model_still_create_nothing(tmp_path):
    cache = fake_cache(tmp_path / "c.safetensors")
    out = tmp_path / "run"
    assert_one_error(invoke_cli("train", *ARC, "--hidden-layer", "5", "--cache", cache, "--out", out),
                     "hidden layer 5", "0..1")
    assert_one_error(invoke_cli("train", *ARC, "--cache", fake_cache(tmp_path / "c8.safetensors", frames=8),
                                "--out", out), "latents [64, 8]", "[64, 16]", "rebuild")
    assert_one_error(invoke_cli("train", *RF, "--cache", tmp_path / "missing.safetensors", "--out", out),
                     "latent cache not found")
    assert not out.exists()
    out.write_text("not a folder")
    assert_one_error(invoke_cli("train", *RF, "--cache", cache, "--out", out), f"--output {out} is a file")
    assert_one_error(invoke_cli("train", "synth", "-m", "random:tiny", "--count", 1, "--out", out),
                     f"--output {out} is a file")
    assert out.read_text() == "not a folder"
    (tmp_path / "caps.jsonl").write_text('{"path": "a.wav", "caption": "x"}\n')
    assert_one_error(invoke_cli("train", "cache", "-m", "random:tiny", "--captions", tmp_path / "caps.jsonl",
                                "--out", tmp_path), f"--output {tmp_path} is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors", "c8.safetensors", "caps.jsonl", "run"]


# --- 17.5: a run that fails before writing anything leaves no folder ------------------------------------------

def test_failed_run_removes_only_the_folders_it_created(tmp_path, monkeypatch):
    import edgegen.train.rf as rf

    def fail(*a, **k):
        raise EdgegenError("injected failure in the first step")

    monkeypatch.setattr(rf, "rf_step", fail)
    cache = fake_cache(tmp_path / "c.safetensors")
    out = tmp_path / "new" / "run"
    assert_one_error(invoke_cli("train", *RF, "--batch-size", 2, "--cache", cache, "--out", out), "injected failure")
    assert not (tmp_path / "new").exists()  # the run folder and the parent it created are gone
    kept = tmp_path / "kept"
    kept.mkdir()
    assert_one_error(invoke_cli("train", *RF, "--batch-size", 2, "--cache", cache, "--out", kept), "injected failure")
    assert kept.is_dir() and not any(kept.iterdir())  # it existed before: never removed


def test_new_folder_keeps_what_holds_anything(tmp_path):
    with pytest.raises(RuntimeError):
        with loop.new_folder(tmp_path / "a" / "b"):
            (tmp_path / "a" / "b" / "log.jsonl").write_text("{}\n")
            raise RuntimeError("after a write")
    assert (tmp_path / "a" / "b" / "log.jsonl").exists()
    with loop.new_folder(tmp_path / "ok") as made:
        assert made.is_dir()
    assert (tmp_path / "ok").is_dir()  # success keeps it


# --- captions: every field checked when the file is read ------------------------------------------------------

@pytest.mark.parametrize("name, text, needles", [
    ("c.jsonl", '{"path": "a.wav", "caption": "x", "seconds": -3}\n', ["c.jsonl:1", "seconds -3", "> 0"]),
    ("c.jsonl", '{"path": "a.wav", "caption": "x"}\n{"path": "b.wav", "caption": "y", "seconds": NaN}\n',
     ["c.jsonl:2", "seconds NaN"]),
    ("c.jsonl", '{"path": "a.wav", "caption": "x", "seconds": true}\n', ["seconds true"]),
    ("c.jsonl", '{"path": "a.wav", "caption": "x", "seconds": 0}\n', ["seconds 0"]),
    ("c.jsonl", '{"path": 5, "caption": "x"}\n', ["c.jsonl:1", "'path' must be text"]),
    ("c.jsonl", '["a.wav", "x"]\n', ["c.jsonl:1", "expected an object"]),
    ("c.csv", "path,caption,seconds\na.wav,x,abc\n", ["c.csv:2", "seconds abc"]),
    ("c.csv", "path,caption,seconds\na.wav,x,-3\n", ["c.csv:2", "seconds -3"]),
    ("c.csv", "path,caption\na.wav,x,extra\n", ["c.csv:2", "unknown fields"]),
])
def test_bad_captions_one_line_before_the_model_loads(tmp_path, name, text, needles):
    (tmp_path / name).write_text(text)
    out = tmp_path / "new" / "cache.safetensors"
    assert_one_error(invoke_cli("train", "cache", "-m", str(tmp_path / "no-model"), "--captions", tmp_path / name,
                                "--out", out), *needles)
    assert not (tmp_path / "new").exists()


def test_synth_takes_a_builtin_model(tmp_path):
    assert_one_error(invoke_cli("train", "synth", "-m", tmp_path / "m", "--out", tmp_path / "d"), "random:tiny")
    assert not (tmp_path / "d").exists()


def test_cache_is_safetensors_naming_its_format(tmp_path):
    """The cache is one safetensors file whose metadata names its format; its header is plain JSON."""
    path = fake_cache(tmp_path / "c.safetensors")
    n = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + n])
    assert header["__metadata__"]["edgegen"] == store.CACHE and "latents" in header


def test_cache_out_that_is_an_input_or_not_a_file_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    """`train cache --out` never replaces the captions it reads, nor a FIFO; checked before any work."""
    import edgegen.pipeline

    monkeypatch.setattr(edgegen.pipeline, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    captions = tmp_path / "caps.jsonl"
    captions.write_text('{"path": "a.wav", "caption": "a dog"}\n')
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, needle in ((captions, "it is the --captions input"), (fifo, "a FIFO")):
        assert_one_error(invoke_cli("train", "cache", "-m", "random:tiny", "--captions", captions, "--out", out),
                         needle)
    assert captions.read_text() == '{"path": "a.wav", "caption": "a dog"}\n' and stat.S_ISFIFO(os.stat(fifo).st_mode)
