"""The native runner's XNNPACK weight cache (android_demo/runner/src/weight_cache.h), ExecuTorch and LiteRT.

The first run of a bundle packs each artifact's weights into <dir>/<sha16>-<backend>-<component>-<arch>-<cpu>.xnnpack
("weight_cache": "built"), later runs map those files instead of packing the model's weights again ("hit"), and
--no-weight-cache packs in memory as before ("off"). The audio is the same bit for bit in all three cases, a cache
file that is truncated or garbage is rebuilt without a word on stderr, concurrent first runs leave complete files and
no temporary ones, and a cache folder that cannot be created is one error line (exit 2) before any model is loaded.
The peak RSS of the runs is printed (pytest -s) for the record, not asserted: the tiny test models are a few MB, far
below the runtimes' own footprint.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import read_float_wav

pytestmark = [pytest.mark.litert, pytest.mark.executorch]

PROMPT, SEED, SECONDS = "a warm analog synth pad with slow attack", 5, 1.0
COMPONENTS = ("text_encoder", "dit", "decoder")
BACKENDS = ["litert", "executorch"]
MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]


# Linux carries a process' peak RSS (ru_maxrss) over fork + exec, so a runner started straight from this (large)
# Python process would report pytest's peak as its own. Started from a child of a small shell it reports its own.
SMALL_PARENT = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]


def _run(runner: Path, bundle: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SMALL_PARENT, str(runner), "--bundle", str(bundle), "--prompt", PROMPT, "--seconds",
                           repr(SECONDS), "--seed", str(SEED), "--threads", "2", "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=600, cwd="/", env=env)


def _popen(runner: Path, bundle: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(runner), "--bundle", str(bundle), "--prompt", PROMPT, "--seconds", repr(SECONDS),
                             "--seed", str(SEED), "--threads", "2", "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")


def _ok(proc: subprocess.CompletedProcess) -> dict:
    """The JSON report of a run that succeeded with nothing on stderr."""
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])



def _cache_files(bundle: Path, backend: str, cache: Path) -> dict[str, Path]:
    """component -> its cache file, checking the folder holds exactly these (no temporary files) and their names."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {}
    for c in COMPONENTS:
        sha16 = manifest["artifacts"][c]["sha256"][:16]
        found = sorted(cache.glob(f"{sha16}-{backend}-{c}-*.xnnpack"))
        assert len(found) == 1, sorted(p.name for p in cache.iterdir())
        assert re.fullmatch(rf"{sha16}-{backend}-{c}-{MACHINE}-[0-9a-f]{{8}}\.xnnpack", found[0].name), found[0].name
        files[c] = found[0]
    assert sorted(cache.iterdir()) == sorted(files.values()), sorted(p.name for p in cache.iterdir())
    return files


def _uses(report: dict) -> tuple[str, dict]:
    return report["weight_cache"], report["weight_cache_components"]


def _all(value: str) -> tuple[str, dict]:
    return value, {c: value for c in COMPONENTS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_run_builds_the_cache_and_later_runs_hit_it_with_the_same_audio(host_runner, stateful, tmp_path, backend):
    bundle = stateful(backend)
    cache = tmp_path / "nested" / "cache"  # missing: the runner creates it, parents included
    first = _ok(_run(host_runner, bundle, tmp_path / "1.wav", "--weight-cache", str(cache)))
    assert _uses(first) == _all("built")
    files = _cache_files(bundle, backend, cache)
    stamps = {c: (f.stat().st_size, f.stat().st_mtime_ns) for c, f in files.items()}
    assert all(size > 0 for size, _ in stamps.values())

    second = _ok(_run(host_runner, bundle, tmp_path / "2.wav", "--weight-cache", str(cache)))
    assert _uses(second) == _all("hit")
    off = _ok(_run(host_runner, bundle, tmp_path / "3.wav", "--no-weight-cache"))
    assert _uses(off) == _all("off")
    # A hit maps the files read-only: they are neither rewritten nor touched by --no-weight-cache.
    assert _cache_files(bundle, backend, cache) == files
    assert {c: (f.stat().st_size, f.stat().st_mtime_ns) for c, f in files.items()} == stamps

    built, hit, plain = read_float_wav(tmp_path / "1.wav"), read_float_wav(tmp_path / "2.wav"), read_float_wav(tmp_path / "3.wav")
    assert built.shape == (2, 44100)
    assert np.array_equal(built, plain) and np.array_equal(hit, plain)
    print(f"\n[{backend}] peak RSS (MB): no cache {off['peak_rss_mb']:.1f}, run 1 (built) {first['peak_rss_mb']:.1f}, "
          f"run 2 (hit) {second['peak_rss_mb']:.1f}; load (s): {off['stages']['load']:.3f}, "
          f"{first['stages']['load']:.3f}, {second['stages']['load']:.3f}; cache files "
          f"{sum(s for s, _ in stamps.values()) / 1e6:.2f} MB")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_damaged_cache_file_is_rebuilt_and_the_audio_stays_the_same(host_runner, stateful, tmp_path, backend, damage):
    bundle = stateful(backend)
    cache = tmp_path / "cache"
    _ok(_run(host_runner, bundle, tmp_path / "ref.wav", "--weight-cache", str(cache)))
    files = _cache_files(bundle, backend, cache)
    size = files["dit"].stat().st_size
    with open(files["dit"], "r+b") as f:
        if damage == "garbage":  # the right size, nothing of either runtime's format
            f.write(bytes(range(256)) * (size // 256) + bytes(size % 256))
        else:
            f.truncate(size // 2 if damage == "truncated" else 0)

    report = _ok(_run(host_runner, bundle, tmp_path / "out.wav", "--weight-cache", str(cache)))
    assert _uses(report) == ("built", {"text_encoder": "hit", "dit": "built", "decoder": "hit"})
    assert np.array_equal(read_float_wav(tmp_path / "out.wav"), read_float_wav(tmp_path / "ref.wav"))
    assert _cache_files(bundle, backend, cache) == files and files["dit"].stat().st_size == size
    again = _ok(_run(host_runner, bundle, tmp_path / "again.wav", "--weight-cache", str(cache)))
    assert _uses(again) == _all("hit")
    assert np.array_equal(read_float_wav(tmp_path / "again.wav"), read_float_wav(tmp_path / "ref.wav"))

    # --verbose says what happened, in one warning line (besides the runtimes' own log lines).
    files["dit"].write_bytes(b"")
    verbose = _run(host_runner, bundle, tmp_path / "v.wav", "--weight-cache", str(cache), "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    warnings = [line for line in verbose.stderr.splitlines() if line.startswith("edgegen-runner: warning:")]
    assert len(warnings) == 1 and "dit" in warnings[0] and "rebuilding" in warnings[0], verbose.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_first_runs_leave_complete_files_and_no_temporary_ones(host_runner, stateful, tmp_path, backend):
    bundle = stateful(backend)
    cache = tmp_path / "cache"
    procs = [_popen(host_runner, bundle, tmp_path / f"{i}.wav", "--weight-cache", str(cache)) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0 and err == "", err
    files = _cache_files(bundle, backend, cache)
    after = _ok(_run(host_runner, bundle, tmp_path / "after.wav", "--weight-cache", str(cache)))
    assert _uses(after) == _all("hit")
    assert _cache_files(bundle, backend, cache) == files
    audio = read_float_wav(tmp_path / "after.wav")
    assert all(np.array_equal(read_float_wav(tmp_path / f"{i}.wav"), audio) for i in range(2))


def test_default_folder_follows_the_environment(host_runner, stateful, tmp_path):
    """$EDGEGEN_WEIGHT_CACHE, else $XDG_CACHE_HOME/edgegen/xnnpack, else $HOME/.cache/edgegen/xnnpack."""
    bundle = stateful("litert")
    base = {k: v for k, v in os.environ.items() if k not in ("EDGEGEN_WEIGHT_CACHE", "XDG_CACHE_HOME", "HOME")}
    cases = [({"EDGEGEN_WEIGHT_CACHE": str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)},
              tmp_path / "env"),
             ({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}, tmp_path / "xdg" / "edgegen" / "xnnpack"),
             ({"HOME": str(tmp_path / "home")}, tmp_path / "home" / ".cache" / "edgegen" / "xnnpack")]
    for i, (env, folder) in enumerate(cases):
        report = _ok(_run(host_runner, bundle, tmp_path / f"{i}.wav", env={**base, **env}))
        assert report["weight_cache"] == "built", env
        assert len(_cache_files(bundle, "litert", folder)) == 3
    # --weight-cache wins over the environment.
    report = _ok(_run(host_runner, bundle, tmp_path / "x.wav", "--weight-cache", str(tmp_path / "flag"),
                      env={**base, **cases[0][0]}))
    assert report["weight_cache"] == "built" and len(_cache_files(bundle, "litert", tmp_path / "flag")) == 3


def _blocker(tmp_path: Path) -> Path:
    """A path no one can create a folder at, not even root: it goes through a regular file."""
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "cache"


BAD = {  # case -> (extra arguments, environment, words of the one error line)
    "flag_uncreatable": (lambda t: ["--weight-cache", str(_blocker(t))], {}, "cannot create the weight cache folder"),
    "env_uncreatable": (lambda t: [], lambda t: {"EDGEGEN_WEIGHT_CACHE": str(_blocker(t))}, "(EDGEGEN_WEIGHT_CACHE)"),
    "flag_is_a_file": (lambda t: ["--weight-cache", str(_blocker(t).parent)], {}, "is not a directory"),
    "flag_empty": (lambda t: ["--weight-cache", ""], {}, "--weight-cache expects a folder"),
    "both_flags": (lambda t: ["--weight-cache", str(t / "c"), "--no-weight-cache"], {}, "exclude each other"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_weight_cache_folder_is_one_error_line(host_runner, stateful, tmp_path, backend, case):
    args, env_changes, needle = BAD[case]
    env = {**os.environ, **(env_changes(tmp_path) if callable(env_changes) else env_changes)}
    out = tmp_path / "out"
    out.mkdir()
    proc = _run(host_runner, stateful(backend), out / "x.wav", *args(tmp_path), env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgegen-runner: error: ") and needle in lines[0], proc.stderr
    assert proc.stdout == "" and list(out.iterdir()) == []
