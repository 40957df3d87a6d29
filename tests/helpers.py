"""Fixture builders shared by the tests: official-layout checkpoints and Hugging Face T5 folders on disk; the edgegen
CLI run as a process or in-process, and its one-line bad-input error checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import edgegen
from edgegen.train.loop import write_t5_folder  # noqa: F401  (the one implementation, re-exported)


def write_official(pipe: edgegen.Pipeline, out: Path) -> Path:
    pipe.save_official(out, raw_config=pipe.raw_config)
    return out


def perturb_(module: torch.nn.Module, scale: float, seed: int = 123) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.std().clamp(min=1e-3))


# random:tiny's decoder (two blocks, edgegen/presets.py): an input convolution, per block a ConvTranspose and three
# residual units of two convolutions, an output convolution. SAO-small's five blocks have 37.
TINY_DECODER_LAYERS = 1 + 2 * (1 + 3 * 2) + 1
TINY_CONV_TRANSPOSES = 2


EDGEGEN = [sys.executable, "-m", "edgegen.cli"]  # the `edgegen` command on this interpreter (run_cli, Popen)
ANY_LINE = ("",)  # assert_one_error(..., after=ANY_LINE): whatever stderr printed before the error line


def run_cli(*args, env: dict[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """`edgegen ARGS` as a real process (text stdout and stderr captured), for what only a process shows: the entry
    point itself, native libraries writing to fd 2, cleanup at exit. `env` is added to this process's environment."""
    return subprocess.run([*EDGEGEN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def invoke_cli(*args):
    """`edgegen ARGS` in this process through click's runner (a click.testing.Result): monkeypatching applies."""
    from click.testing import CliRunner

    from edgegen.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error(result, *needles: str | re.Pattern, after: tuple[str, ...] = ()) -> str:
    """Bad input as the CLI reports it (run_cli or invoke_cli): exit status 2, no traceback, nothing on stdout, and
    stderr ending in its one `edgegen: error: ...` line, which holds every needle (a string it contains, a pattern it
    matches); returns that line. Lines before it must start (indent stripped) with a prefix in `after`, such as a
    run's progress or a runtime's own log lines; by default there are none."""
    process = isinstance(result, subprocess.CompletedProcess)
    code = result.returncode if process else result.exit_code
    assert code == 2 and (process or isinstance(result.exception, SystemExit)), \
        (code, result.stdout, result.stderr, None if process else result.exception)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    *before, line = result.stderr.strip().splitlines() or [""]
    assert line.startswith("edgegen: error: "), result.stderr
    assert all(b.strip().startswith(after) and not b.startswith("edgegen: error:") for b in before), result.stderr
    for needle in needles:
        assert needle.search(line) if isinstance(needle, re.Pattern) else needle in line, (needle, line)
    assert result.stdout == "", result.stdout
    return line


AUDIO_TO_AUDIO = ("text_encoder", "dit", "decoder", "encoder")  # bundle_factory(..., components=AUDIO_TO_AUDIO)

# Outside tmp so warm sessions only relink; build trees and downloads also live under ~/.cache/edgegen.
RUNNERS_DIR = Path.home() / ".cache" / "edgegen" / "test-runners"
ARM64_CPUINFO = Path(__file__).parent / "fixtures" / "cpuinfo_arm64.txt"


def portable_command(runner_dir: Path, *, cpu: str | None = None, arm64_cpuinfo: bool = False) -> list[str]:
    """The portable runner under qemu-aarch64 with no host sysroot (no -L, QEMU_LD_PREFIX dropped by
    `no_sysroot_env`): `qemu-aarch64 lib/ld-linux-aarch64.so.1 --library-path lib bin/edgegen-runner`.

    `arm64_cpuinfo`: inside a private mount namespace with tests/fixtures/cpuinfo_arm64.txt over /proc/cpuinfo
    (unshare -m, root). LiteRT's CPU detection crashes on the host's x86 cpuinfo; a phone has an arm64 one."""
    from edgegen.runner_build import portable_qemu_command

    qemu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    assert qemu is not None, "qemu-aarch64 not found; install it with `apt-get install qemu-user`"
    cmd = portable_qemu_command(runner_dir, qemu=qemu, cpu=cpu)
    return with_arm64_cpuinfo(cmd) if arm64_cpuinfo else cmd


def with_arm64_cpuinfo(cmd: list[str]) -> list[str]:
    """`cmd` inside a private mount namespace with tests/fixtures/cpuinfo_arm64.txt over /proc/cpuinfo (unshare -m,
    root): what an aarch64 program under qemu reads as its CPU's features."""
    assert shutil.which("unshare"), "unshare not found (util-linux)"
    return ["unshare", "-m", "/bin/sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(ARM64_CPUINFO), *cmd]


def no_sysroot_env() -> dict[str, str]:
    """This process's environment without QEMU_LD_PREFIX: qemu must find nothing of a host aarch64 sysroot."""
    return {k: v for k, v in os.environ.items() if k != "QEMU_LD_PREFIX"}


def read_float_wav(path: Path) -> np.ndarray:
    """A runner's float32 WAV at 44.1 kHz as [channels, n] (asserts the rate and the FLOAT subtype)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert sr == 44100 and sf.info(str(path)).subtype == "FLOAT"
    return data.T


def runner_report(proc) -> dict:
    """The JSON object on a runner's last stdout line."""
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_edited_manifest_refused(source: Path, tmp_path: Path, edit, match: str) -> None:
    """A copy of bundle `source` with `edit(manifest)` applied is refused by open_bundle (error matching `match`) and
    by `edgegen run` (exit 2, one stderr line, no WAV written)."""
    import json

    import pytest

    from edgegen.bundle import open_bundle
    from edgegen.errors import EdgegenError

    bundle = tmp_path / "b"
    shutil.copytree(source, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    edit(m)
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgegenError, match=match):
        open_bundle(bundle)
    assert_one_error(run_cli("run", "-b", bundle, "-p", "a dog barking", "-s", "1", "-o", tmp_path / "x.wav"))
    assert not (tmp_path / "x.wav").exists()
