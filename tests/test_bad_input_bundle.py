"""Bad bundles through the CLI (issues 11.11, 17.2, 17.5, 17.6, 17.8, 17.9): exit 2, exactly one
`edgegen: error:` line naming the problem, no traceback, nothing written, and no unpacked zip copy left behind.

Every bad bundle is a copy of one real random:tiny ExecuTorch bundle (exported once per session) with its manifest
or files edited.
"""

import gc
import json
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import edgegen.bundle
import edgegen.bundle_pipeline
from edgegen.bundle import UNPACK_PREFIX, open_bundle
from edgegen.bundle_pipeline import BundlePipeline
from tests.helpers import assert_one_error, invoke_cli, run_cli

pytestmark = pytest.mark.executorch


@pytest.fixture(scope="module")
def good(bundle_factory) -> Path:
    return bundle_factory("executorch", "fp32")


@pytest.fixture
def tmpdir_(tmp_path, monkeypatch) -> Path:
    """A private temporary folder for unpacked zips (tempfile caches its choice, so set it directly)."""
    t = tmp_path / "tmp"
    t.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    return t


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(UNPACK_PREFIX))


def _copy(good: Path, dst: Path, edit=None) -> Path:
    shutil.copytree(good, dst)
    if edit is not None:
        m = json.loads((dst / "manifest.json").read_text())
        edit(m)
        (dst / "manifest.json").write_text(json.dumps(m, indent=2))
    return dst


def _zip(folder: Path, out: Path, extra=()) -> Path:
    """A zip like `export --zip` writes (members under `<stem>/`), plus `extra` (ZipInfo, bytes) members."""
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, arcname=f"{out.stem}/{f.name}")
        for info, data in extra:
            zf.writestr(info, data)
    return out


def _run(bundle, out, *extra):
    return invoke_cli("run", "-b", bundle, "-p", "a dog barking", "-s", "0.3", *extra, "-o", out)


# 17.2: manifest paths must stay inside the bundle ------------------------------------------------------------

def _escape_by_name(name_of):
    def make(good, tmp_path):
        outside = tmp_path / "outside"
        outside.mkdir()
        shutil.copy(good / "dit.pte", outside / "dit.pte")  # same bytes: the manifest's checksum would pass
        return _copy(good, tmp_path / "b", lambda m: m["artifacts"]["dit"].update(file=name_of(outside))), outside
    return make


def _escape_by_symlink(entry):
    def make(good, tmp_path):
        outside = tmp_path / "outside"
        outside.mkdir()
        b = _copy(good, tmp_path / "b")
        m = json.loads((b / "manifest.json").read_text())
        name = m["tokenizer"]["file"] if entry == "tokenizer" else m["artifacts"][entry]["file"]
        (b / name).rename(outside / name)  # the real file, checksum intact, now outside
        (b / name).symlink_to(outside / name)
        return b, outside
    return make


@pytest.mark.parametrize("make, needle", [
    (_escape_by_name(lambda o: "../outside/dit.pte"), "artifacts.dit.file is \"../outside/dit.pte\""),
    (_escape_by_name(lambda o: str(o / "dit.pte")), "artifacts.dit.file is"),
    (_escape_by_name(lambda o: "sub/../dit.pte"), "plain file name"),
    (_escape_by_symlink("dit"), "artifact dit file dit.pte is a symlink"),
    (_escape_by_symlink("tokenizer"), "tokenizer file spiece.model is a symlink"),
], ids=["dotdot", "absolute", "subfolder", "symlink-artifact", "symlink-tokenizer"])
def test_manifest_paths_cannot_leave_the_bundle(good, tmp_path, monkeypatch, make, needle):
    """Refused before anything outside is hashed or loaded (the outside copy would pass its checksum)."""
    bundle, outside = make(good, tmp_path)
    hashed = []
    real = edgegen.bundle.sha256_file
    monkeypatch.setattr(edgegen.bundle, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    out = tmp_path / "x.wav"
    assert_one_error(_run(bundle, out), needle)
    assert not out.exists()
    assert not [p for p in hashed if outside in p.resolve().parents], hashed


# 11.11 / 17.5: a zip's unpacked copy is removed; members that escape are refused ---------------------------------

def test_zip_unpacked_copy_is_removed_after_info_and_run(good, tmp_path, tmpdir_):
    z = _zip(good, tmp_path / "tiny.zip")
    res = invoke_cli("info", z)
    assert res.exit_code == 0 and "checksums OK" in res.output, res.output
    assert _leftovers(tmpdir_) == []
    out = tmp_path / "a.wav"
    res = _run(z, out)
    assert res.exit_code == 0 and out.exists(), (res.output, res.exception)
    assert _leftovers(tmpdir_) == []
    # an error after unpacking: removed too, and the message names the zip, not the vanished temporary folder
    bad = _copy(good, tmp_path / "bad", lambda m: m["sampler"].update(steps=-3))
    line = assert_one_error(_run(_zip(bad, tmp_path / "bad.zip"), tmp_path / "b.wav"), "bad.zip", "sampler.steps is -3")
    assert str(tmpdir_) not in line and _leftovers(tmpdir_) == []


def test_bundle_close_and_safety_net(good, tmp_path, tmpdir_):
    z = _zip(good, tmp_path / "tiny.zip")
    with open_bundle(z) as b:
        assert b.root.is_dir() and b.unpacked.parent == tmpdir_
    assert not b.unpacked.exists()  # deterministic: the Bundle object is still alive here
    bp = BundlePipeline.open(z, low_memory=True)
    bp.close()
    assert not bp.bundle.unpacked.exists()
    b = open_bundle(z)
    unpacked = b.unpacked
    del b
    gc.collect()
    assert not unpacked.exists() and _leftovers(tmpdir_) == []


def test_zip_cleanup_at_process_exit(good, tmp_path):
    """The real command in its own process: `edgegen info X.zip` leaves nothing in $TMPDIR."""
    z = _zip(good, tmp_path / "tiny.zip")
    t = tmp_path / "t"
    t.mkdir()
    res = run_cli("info", z, env={"TMPDIR": str(t)}, timeout=600)
    assert res.returncode == 0 and "checksums OK" in res.stdout, res.stderr
    assert _leftovers(t) == []


def test_a_symlink_to_another_file_of_the_bundle_is_fine(good, tmp_path):
    """The rule is "nothing from outside the bundle", as in the native runner: a link inside it loads."""
    b = _copy(good, tmp_path / "b")
    (b / "dit.pte").rename(b / "dit-real.pte")
    (b / "dit.pte").symlink_to("dit-real.pte")
    with open_bundle(b) as bundle:
        assert bundle.path("dit").resolve() == (b / "dit-real.pte").resolve()


@pytest.mark.parametrize("index, needle", [([0, 0, 1, 2], "have index [0, 0, 1, 2]"),
                                           ([0, 1, 2, None], "have index [0, 1, 2, None]")])
def test_bad_input_index_is_refused_when_the_manifest_is_read(good, tmp_path, index, needle):
    def edit(m):
        for i, k in zip(m["artifacts"]["dit"]["inputs"], index):
            i.pop("index")
            if k is not None:
                i["index"] = k
    assert_one_error(invoke_cli("info", _copy(good, tmp_path / "b", edit)), "artifacts.dit.inputs", needle)


def _member(name: str, *, symlink: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    if symlink:
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("extra, needle", [
    ([(_member("tiny/extra", symlink=True), "/etc/passwd")], "zip member 'tiny/extra' is a symlink"),
    ([(_member("tiny/../../evil.txt"), "x")], "zip member 'tiny/../../evil.txt' climbs out with '..'"),
    ([(_member("/abs/evil.txt"), "x")], "zip member '/abs/evil.txt' has an absolute path"),
], ids=["symlink", "dotdot", "absolute"])
def test_zip_members_that_escape_are_refused(good, tmp_path, tmpdir_, extra, needle):
    z = _zip(good, tmp_path / "tiny.zip", extra=extra)
    assert_one_error(invoke_cli("info", z), needle)
    assert _leftovers(tmpdir_) == [] and not (tmp_path / "evil.txt").exists()


# 17.9: a corrupt or empty zip says what is wrong -----------------------------------------------------------------

def _empty_file(good, p):
    p.write_bytes(b"")


def _garbage(good, p):
    p.write_bytes(b"this is not a zip file at all\n" * 10)


def _truncated(good, p):
    data = _zip(good, p.with_name("full.zip")).read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _empty_zip(good, p):
    zipfile.ZipFile(p, "w").close()


def _no_manifest(good, p):
    with zipfile.ZipFile(p, "w") as zf:
        zf.write(good / "dit.pte", arcname="tiny/dit.pte")


def _two_manifests(good, p):
    with zipfile.ZipFile(p, "w") as zf:
        for sub in ("a", "b"):
            zf.write(good / "manifest.json", arcname=f"{sub}/manifest.json")


def _bad_crc(good, p):
    data = bytearray(_zip(good, p.with_name("full.zip")).read_bytes())
    i = data.index(b"full/spiece.model") + len("full/spiece.model") + 100  # inside that member's stored data
    data[i] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("make, needle", [
    (_empty_file, "is an empty file (0 bytes)"),
    (_garbage, "is not a zip file"),
    (_truncated, "is not a zip file"),
    (_empty_zip, "is an empty zip"),
    (_no_manifest, "expected exactly one manifest.json inside the zip, found none"),
    (_two_manifests, "expected exactly one manifest.json inside the zip, found 2"),
    (_bad_crc, "corrupt"),
], ids=["empty-file", "garbage", "truncated", "empty-zip", "no-manifest", "two-manifests", "bad-crc"])
def test_corrupt_or_empty_zip_says_what_is_wrong(good, tmp_path, tmpdir_, make, needle):
    z = tmp_path / "bundle.zip"
    make(good, z)
    line = assert_one_error(invoke_cli("info", z), needle, str(z))
    assert "bundle not found" not in line and _leftovers(tmpdir_) == []


def test_missing_bundle_is_still_not_found(tmp_path):
    assert_one_error(invoke_cli("info", tmp_path / "nope.zip"), "bundle not found")


# 17.8: the manifest schema ---------------------------------------------------------------------------------------

def _set(*keys, value):
    def edit(m):
        for k in keys[:-1]:
            m = m[k]
        m[keys[-1]] = value
    return edit


def _drop(*keys):
    def edit(m):
        for k in keys[:-1]:
            m = m[k]
        del m[keys[-1]]
    return edit


def _streamed(**stream):
    def edit(m):
        m["schema_version"] = 2
        m["decoder_stream"] = {"window": 16, "overlap": 2, "hop": 2048, **stream}
    return edit


@pytest.mark.parametrize("edit, needle", [
    (_drop("artifacts", "dit", "sha256"), "artifacts.dit.sha256 is missing; expected 64 lowercase hex digits"),
    (_set("sampler", "steps", value=-3), "sampler.steps is -3; expected a positive integer"),
    (_set("sample_rate", value=0), "sample_rate is 0; expected a positive integer"),
    (_set("artifacts", "dit", value=None), "artifacts.dit is null; expected an object with file, sha256"),
    (_set("latent_length", value="sixteen"), 'latent_length is "sixteen"; expected a positive integer'),
    (_set("latent_length", value=True), "latent_length is true; expected a positive integer"),
    (lambda m: m["artifacts"]["dit"]["inputs"][0].update(shape=[1, -64, 16]),
     "artifacts.dit.inputs[0].shape is [1, -64, 16]; expected a non-empty list of positive integers"),
    (lambda m: m["artifacts"]["decoder"]["outputs"][0].update(dtype="float16"),
     'artifacts.decoder.outputs[0].dtype is "float16"; expected one of float32, int32'),
    (_set("artifacts", "dit", "inputs", value=[]), "artifacts.dit.inputs is []; expected a non-empty list"),
    (_set("artifacts", "vocoder", value={}), "artifacts has unknown component 'vocoder'"),
    (_set("target", "threads", value=0), "target.threads is 0; expected a positive integer"),
    (_set("tokenizer", "size", value=-1), "tokenizer.size is -1; expected an integer >= 0"),
    (_set("max_seconds", value="NaN"), 'max_seconds is "NaN"; expected a positive number'),
    (_streamed(overlap=-1), "decoder_stream.overlap is -1; expected an integer >= 0"),
    (_streamed(window="16"), 'decoder_stream.window is "16"; expected a positive integer'),
    (_set("schema_version", value="1"), "schema_version '1' is not supported"),
], ids=["sha256-missing", "steps", "sample-rate", "artifact-null", "latent-length", "bool", "shape", "dtype",
        "no-inputs", "unknown-component", "threads", "size", "max-seconds", "stream-overlap", "stream-window",
        "version-string"])
def test_manifest_schema(good, tmp_path, monkeypatch, edit, needle):
    """Each bad field is named with its value and what is allowed, before any artifact is loaded."""
    monkeypatch.setattr(edgegen.bundle_pipeline, "load_artifacts",
                        lambda *a, **k: pytest.fail("artifacts loaded before the manifest was validated"))
    bundle = _copy(good, tmp_path / "b", edit)
    out = tmp_path / "x.wav"
    assert_one_error(_run(bundle, out), needle, str(bundle / "manifest.json"))
    assert not out.exists()
    assert_one_error(invoke_cli("info", bundle), needle)


# 17.9: `run --stream` on a whole-sequence bundle -------------------------------------------------------------

def test_stream_whole_sequence_tiny_says_too_short(good, tmp_path):
    out = tmp_path / "x.wav"
    line = assert_one_error(_run(good, out, "--stream", "--low-memory"), "too short to stream", "16-frame")
    assert "re-export" not in line and not out.exists()


def test_stream_whole_sequence_long_suggests_reexport(good, tmp_path):
    """A whole-sequence bundle whose sequence is longer than the default window: a re-export would stream."""
    bundle = _copy(good, tmp_path / "b", _set("latent_length", value=256))
    out = tmp_path / "x.wav"
    line = assert_one_error(_run(bundle, out, "--stream", "--low-memory"), "--decoder-window auto")
    assert "too short" not in line and not out.exists()


# 17.6: non-finite values name the stage; a streamed run leaves no partial WAV --------------------------------

def test_nan_from_dit_names_the_step(good, tmp_path, monkeypatch):
    calls = []
    real = BundlePipeline.velocity

    def velocity(self, x, t, cross, glob):
        calls.append(1)
        v = real(self, x, t, cross, glob)
        return np.full_like(v, float("nan")) if len(calls) == 3 else v

    monkeypatch.setattr(BundlePipeline, "velocity", velocity)
    out = tmp_path / "x.wav"
    assert_one_error(_run(good, out), "the dit artifact's output at step 3 of 8", "NaN",
                     after=("[", "sampling"))  # "[": the runtime's own log lines
    assert not out.exists() and len(calls) == 3


def test_nan_from_text_encoder_is_named(good, tmp_path, monkeypatch):
    real = BundlePipeline.encode_text

    def encode_text(self, *a, **k):
        cross, glob = real(self, *a, **k)
        return cross, np.full_like(glob, float("inf"))

    monkeypatch.setattr(BundlePipeline, "encode_text", encode_text)
    out = tmp_path / "x.wav"
    assert_one_error(_run(good, out), "the text_encoder artifact's global_cond output", after=("[", "sampling"))
    assert not out.exists()


def test_nan_in_a_streamed_run_leaves_no_partial_wav(good, tmp_path, monkeypatch):
    """The first window reaches the file, the second is NaN: the error names the audio and the WAV is removed."""
    import edgegen.streaming

    # a schema-2 manifest whose window is the tiny decoder's own input (16 frames), so `run --stream` accepts it
    bundle = _copy(good, tmp_path / "b", _streamed())
    out = tmp_path / "x.wav"
    written = lambda: [p.name for p in tmp_path.iterdir() if "x.wav" in p.name]  # noqa: E731  (OUTPUT or partial)
    seen = []

    def decode_stream(decoder, latents, **kwargs):
        yield torch.zeros(1, 2, 4096)
        seen.append(written())  # the first chunk is on disk by now
        yield torch.full((1, 2, 4096), float("nan"))

    monkeypatch.setattr(edgegen.streaming, "decode_stream", decode_stream)
    assert_one_error(_run(bundle, out, "--stream"), "the decoded audio", "non-finite",
                     after=("[", "streaming into", "sampling", "chunk:"))
    assert len(seen) == 1 and seen[0] and written() == []
