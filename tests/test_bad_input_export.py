"""`edgegen export` refuses bad input with one `edgegen: error:` line (exit 2, no traceback) and writes or replaces
nothing: what --force may replace, SIGTERM, non-finite weights, --decoder-window, recipe / target files.

Everything that can be refused before the model loads is checked with `load_pipeline` patched to fail the test,
so those cases take milliseconds; only two tests run a real converter (one export, one SIGTERM).
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from tests.helpers import EDGEGEN, assert_one_error, invoke_cli, run_cli, write_official, write_t5_folder

STAGE_LINE = re.compile(r"^\[\s*\d+\.\ds\] (text_encoder|dit|decoder)\s+(quantize|trace|lower|serialize)$")
VERIFY_LINE = re.compile(r"^\[\s*\d+\.\ds\] verify\s+(parity of .+|passed in \d+\.\ds)$")


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (hidden ones included) with its bytes: equal snapshots = nothing written."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the command gets as far as loading a model (every check here comes before that)."""
    def load_pipeline(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr("edgegen.pipeline.load_pipeline", load_pipeline)


def _export(*args: str):
    return invoke_cli("export", "-m", "random:tiny", *args)


def _fake_bundle(root: Path, *, extra: str | None = None) -> Path:
    """A folder shaped like an edgegen bundle (manifest + the files it lists): what --force may replace."""
    root.mkdir(parents=True)
    for name in ("dit.tflite", "spiece.model"):
        (root / name).write_bytes(b"old " + name.encode())
    manifest = {"schema_version": 1, "edgegen_version": "0.1.0", "backend": "litert",
                "artifacts": {"dit": {"file": "dit.tflite"}}, "tokenizer": {"file": "spiece.model"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    if extra:
        (root / extra).write_text("mine")
    return root


def _zip_of(folder: Path, zip_path: Path) -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, arcname=f"{zip_path.stem}/{f.name}")
    return zip_path


# ---- 17.3: an existing output, --force and --zip ---------------------------------------------------------------

def _not_a_bundle(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")


def _foreign_manifest(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text('{"name": "my web app", "version": 3}')


def _bundle_plus_user_file(tmp_path):
    _fake_bundle(tmp_path / "out", extra="notes.txt")


def _plain_file(tmp_path):
    (tmp_path / "out").write_text("a file, not a folder")


@pytest.mark.parametrize("make,args,needle", [
    (_not_a_bundle, ["--force"], r"out exists and has no readable manifest\.json.*--force only replaces a bundle "
                                 r"edgegen made"),
    (_foreign_manifest, ["--force"], r"out exists and its manifest\.json is not an edgegen manifest"),
    (_bundle_plus_user_file, ["--force"], r"out exists and holds 'notes\.txt', which its manifest does not list"),
    (_plain_file, ["--force"], r"out exists and is not a folder"),
    (_not_a_bundle, [], r"out already exists; pass --force to replace it"),
])
def test_force_replaces_only_an_edgegen_bundle(tmp_path, no_model, make, args, needle):
    make(tmp_path)
    before = _snapshot(tmp_path)
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out"), *args),
                     re.compile(needle))
    assert _snapshot(tmp_path) == before


def test_zip_is_not_overwritten_without_force(tmp_path, no_model):
    (tmp_path / "out.zip").write_bytes(b"someone's zip")
    before = _snapshot(tmp_path)
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out"), "--zip"),
                     re.compile(r"out\.zip already exists; pass --force to replace it"))
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("content,needle", [("not a zip", "not a zip file"), ("foreign zip", "not an edgegen bundle zip"),
                                            ("zip of a non-bundle", "not an edgegen bundle zip")])
def test_force_replaces_only_an_edgegen_zip(tmp_path, no_model, content, needle):
    z = tmp_path / "out.zip"
    if content == "not a zip":
        z.write_bytes(b"PK? not really")
    elif content == "foreign zip":
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("photos/cat.jpg", b"meow")
    else:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "manifest.json").write_text('{"name": "my web app"}')
        _zip_of(tmp_path / "src", z)
    before = _snapshot(tmp_path)
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out"), "--zip", "--force"),
                     re.compile(rf"out\.zip exists and is {needle}; --force only replaces a bundle edgegen made"))
    assert _snapshot(tmp_path) == before


# ---- 17.7: --decoder-window ------------------------------------------------------------------------------------

@pytest.mark.parametrize("window,needle", [
    ("0", r"decoder window 0 is too small"),
    ("-5", r"decoder window -5 is too small"),
    ("big", r"decoder window must be auto, whole or a number of latent frames, got 'big'"),
])
def test_decoder_window_refused_before_the_model_loads(tmp_path, no_model, window, needle):
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out"), "--decoder-window",
                             window), re.compile(needle))
    assert list(tmp_path.iterdir()) == []


def test_decoder_window_too_small_for_the_model(tmp_path):
    """An overlapped window must exceed twice the receptive field (random:tiny: 5 frames); a stateful one must be
    shorter than the sequence (16 frames). Both need the model, but no export work."""
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out"), "--decoder-window", "8",
                             "--decoder-stream", "overlap"), re.compile(r"decoder window 8 is too small: .* >= 11"),
                     after=("loading ",))
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out"), "--decoder-window", "16"),
                     re.compile(r"decoder window 16 is not shorter than the 16-frame latent sequence"),
                     after=("loading ",))
    assert list(tmp_path.iterdir()) == []


# ---- 17.8 / 17.9: recipe and target files ----------------------------------------------------------------------

_RECIPE = """name = "r"
[components.text_encoder]
rules = [{ pattern = "*", scheme = "fp32" }]
[components.dit]
sqnr_floor_db = 12.0
rules = [{ pattern = "*", scheme = "int4", group_size = 32 }]
[components.decoder]
rules = [{ pattern = "*", scheme = "fp32" }]
"""
_TARGET = """name = "t"
backend = "litert"
abi = "x86_64"
threads = 2
fp16_compute = false
"""


@pytest.mark.parametrize("kind,old,new,needle", [
    ("recipe", "group_size = 32", 'group_size = "big"',
     r'components\.dit\.rules\[0\]\.group_size = "big" is not allowed: expected a positive integer'),
    ("recipe", 'rules = [{ pattern = "*", scheme = "int4", group_size = 32 }]', 'rules = "int8"',
     r'components\.dit\.rules = "int8" is not allowed: expected a non-empty array'),
    ("recipe", _RECIPE, 'name = "r"\ndescription = "forgot the components"\n', r"components is missing"),
    ("recipe", "sqnr_floor_db = 12.0", "sqnr_floor_db = 12.0 ]", r"invalid TOML"),
    ("target", "threads = 2", 'threads = "two"', r'threads = "two" is not allowed: expected an integer from 1 to 256'),
    ("target", "threads = 2", "threads = 0", r"threads = 0 is not allowed: expected an integer from 1 to 256"),
    ("target", "fp16_compute = false", 'fp16_compute = "no"', r'fp16_compute = "no" is not allowed: expected true'),
])
def test_bad_recipe_or_target_file(tmp_path, no_model, kind, old, new, needle):
    files = {"recipe": _RECIPE, "target": _TARGET}
    assert old in files[kind]
    files[kind] = files[kind].replace(old, new)
    for k, text in files.items():
        (tmp_path / f"{k}.toml").write_text(text)
    line = assert_one_error(_export("-t", str(tmp_path / "target.toml"), "-r", str(tmp_path / "recipe.toml"),
                                    "-o", str(tmp_path / "out")), re.compile(needle))
    assert f"{kind} {tmp_path / (kind + '.toml')}: " in line  # names the file
    assert not (tmp_path / "out").exists()


def test_the_valid_recipe_and_target_files_pass_the_checks(tmp_path, no_model):
    """The base files of the cases above are valid: the command gets as far as loading the model."""
    (tmp_path / "recipe.toml").write_text(_RECIPE)
    (tmp_path / "target.toml").write_text(_TARGET)
    res = _export("-t", str(tmp_path / "target.toml"), "-r", str(tmp_path / "recipe.toml"), "-o", str(tmp_path / "o"))
    assert isinstance(res.exception, AssertionError) and "model was loaded" in str(res.exception)


# ---- 17.6: non-finite weights ----------------------------------------------------------------------------------

def test_nan_weight_in_a_python_built_pipeline(tiny, tmp_path, monkeypatch):
    nan = copy.deepcopy(tiny)
    with torch.no_grad():
        nan.dit.to_cond_embed[0].weight[0, 0] = float("nan")
    monkeypatch.setattr("edgegen.pipeline.load_pipeline", lambda *a, **k: nan)
    assert_one_error(_export("-t", "host-litert", "-r", "fp32", "-o", str(tmp_path / "out")),
                     re.compile(r"dit weight 'to_cond_embed\.0\.weight' holds 1 non-finite value\(s\)"),
                     after=("loading ",))
    assert list(tmp_path.iterdir()) == []


def test_inf_weight_in_a_checkpoint(tiny, tmp_path):
    bad = copy.deepcopy(tiny)
    with torch.no_grad():
        bad.dit.transformer.project_in.weight[1, 2] = float("inf")
    model = write_official(bad, tmp_path / "model")
    t5 = write_t5_folder(bad, tmp_path / "t5")
    before = _snapshot(tmp_path)
    res = invoke_cli("export", "-m", model, "--t5", t5, "-t", "host-litert", "-r", "fp32", "-o", tmp_path / "out")
    assert_one_error(res, re.compile(r"(?=.*transformer\.project_in\.weight)(?=.*(non-finite|NaN|inf))"),
                     after=("loading ",))
    assert _snapshot(tmp_path) == before


# ---- 11.12: converter output goes to a log; shown when a conversion fails --------------------------------------

def _chatty(fail: bool):
    def export_component(component, module, example_inputs, path, *, rules, on_stage):
        on_stage("trace")
        print("LiteRT-Torch Convert chatter from Python")
        sys.stderr.write("absl chatter on stderr\n")
        os.write(1, b"C-level chatter on fd 1\n")
        os.write(2, b"C-level chatter on fd 2\n")
        if fail:
            raise RuntimeError("converter exploded\nsecond line of the message")
        on_stage("serialize")
        Path(path).write_bytes(b"fake artifact")
        return {}, None
    return export_component


CHATTER = ("LiteRT-Torch Convert chatter from Python", "absl chatter on stderr", "C-level chatter on fd 1",
           "C-level chatter on fd 2")


def test_failed_conversion_shows_the_log_tail_and_keeps_the_log(tmp_path, monkeypatch, capfd, fresh_lowering):
    monkeypatch.setattr("edgegen.export.litert.export_component", _chatty(fail=True))
    res = _export("-t", "host-litert", "-r", "fp32", "-c", "dit", "-o", str(tmp_path / "out"))
    line = assert_one_error(res, re.compile(r"dit: litert conversion failed \(RuntimeError: converter exploded\); "
                                            r"the converter log is kept at \S+\.log$"),
                            after=("loading ", "[", "| "))  # the stage lines, then the converter log's tail
    kept = Path(line.rsplit(" ", 1)[1])
    try:
        log = kept.read_text()
        assert all(c in log for c in CHATTER) and "Traceback" in log and "second line of the message" in log
        tail = [ln for ln in res.stderr.splitlines() if ln.startswith("  | ")]
        assert tail == [f"  | {c}" for c in CHATTER]  # what the converter printed, not the traceback
    finally:
        kept.unlink()
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone
    fds = capfd.readouterr()
    assert not any(c in fds.out + fds.err for c in CHATTER)


@pytest.mark.parametrize("verbose", [False, True])
def test_converter_output_only_with_verbose(tmp_path, monkeypatch, capfd, verbose, fresh_lowering):
    monkeypatch.setattr("edgegen.export.litert.export_component", _chatty(fail=False))
    res = _export("-t", "host-litert", "-r", "fp32", "-c", "dit", "-o", str(tmp_path / "out"), "--no-verify",
                  *(["--verbose"] if verbose else []))  # a fake artifact: nothing a runtime could verify
    assert res.exit_code == 0, res.output
    fds = capfd.readouterr()
    shown = res.output + fds.out + fds.err
    assert all((c in shown) == verbose for c in CHATTER), shown
    stages = [ln for ln in res.stderr.splitlines() if STAGE_LINE.match(ln)]
    assert [s.split()[-1] for s in stages] == ["trace", "serialize"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dit.tflite", "manifest.json", "spiece.model"]


# ---- the real converter: stage lines only, and --force / --zip replace edgegen's own bundle ---------------------

def test_real_export_prints_stage_lines_and_force_replaces_edgegen_bundle_and_zip(tmp_path, fresh_lowering):
    out = _fake_bundle(tmp_path / "out")
    _zip_of(out, tmp_path / "out.zip")
    res = run_cli("export", "-m", "random:tiny", "-t", "host-litert", "-r", "int8", "-c", "text_encoder", "-o", out,
                  "--force", "--zip", timeout=600)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == "loading random:tiny" and all(STAGE_LINE.match(ln) for ln in lines[1:-2]), res.stderr
    assert [ln.split()[-1] for ln in lines[1:-2]] == ["trace", "quantize", "serialize"]
    assert all(VERIFY_LINE.match(ln) for ln in lines[-2:]), res.stderr  # the runtimes' own output went to the log
    assert "LiteRT-Torch Convert" not in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "spiece.model", "text_encoder.tflite"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.zip"]
    res = run_cli("info", tmp_path / "out.zip", timeout=300)
    assert res.returncode == 0 and "checksums OK" in res.stdout, res.stderr


# ---- 17.5: SIGTERM during an export ----------------------------------------------------------------------------

def test_sigterm_during_export_removes_the_staging_folder(tmp_path, fresh_lowering):
    out = tmp_path / "out"
    proc = subprocess.Popen([*EDGEGEN, "export", "-m", "random:tiny", "-t", "host-litert", "-r", "fp32",
                             "-c", "decoder", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".out.partial-*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(2)  # inside the conversion
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_swallowed_by_a_gc_callback_still_stops_the_export(tmp_path, monkeypatch, fresh_lowering):
    """Python drops the SystemExit raised while a gc callback runs (jax has one in the converter): the CLI raises
    it again at the next stage line, before anything is committed."""
    import gc

    reached = []

    def export_component(component, module, example_inputs, path, *, rules, on_stage):
        on_stage("trace")

        def callback(phase, info):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside the callback, and its exception is dropped
                pass

        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        reached.append("after the swallowed SIGTERM")
        on_stage("serialize")
        Path(path).write_bytes(b"fake artifact")
        return {}, None

    monkeypatch.setattr("edgegen.export.litert.export_component", export_component)
    res = _export("-t", "host-litert", "-r", "fp32", "-c", "dit", "-o", str(tmp_path / "out"))
    assert reached and res.exit_code == 128 + signal.SIGTERM, (reached, res.output, res.exception)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the CLI put the handler back
