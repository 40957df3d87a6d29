"""Fixture builders shared by the tests: official-layout checkpoints and Hugging Face T5 folders on disk."""

from __future__ import annotations

import os
import shutil
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
    if arm64_cpuinfo:
        assert shutil.which("unshare"), "unshare not found (util-linux)"
        cmd = ["unshare", "-m", "/bin/sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(ARM64_CPUINFO), *cmd]
    return cmd


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
    import subprocess
    import sys

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
    res = subprocess.run([sys.executable, "-m", "edgegen.cli", "run", "-b", str(bundle), "-p", "a dog barking", "-s",
                          "1", "-o", str(tmp_path / "x.wav")], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.wav").exists()
