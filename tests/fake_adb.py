"""A stand-in `adb` for tests: plays one (or several) Android devices whose filesystem is a local folder.

No phone is involved. `/data/local/tmp` on the "device" is `$FAKE_ADB_ROOT/data/local/tmp`, and `adb shell CMD`
runs CMD with the host's /bin/sh after that path substitution, so `sha256sum`, `mkdir -p`, `chmod` and `df -k` are
the host's. The runner pushed is the real aarch64 one (the portable build): its launcher starts it through the
glibc loader it carries, under qemu-aarch64 ($EDGEGEN_RUNNER_WRAPPER, set from FAKE_ADB_WRAPPER), with no host
sysroot; an arm64 /proc/cpuinfo can be bind-mounted for it in a private mount namespace (FAKE_ADB_CPUINFO, root
only: LiteRT's CPU detection crashes on an x86 cpuinfo, a phone has an arm64 one).

    install(bin_dir) -> bin_dir/adb     a shell wrapper that runs this file with the current (venv) Python

Environment:
    FAKE_ADB_ROOT      the device's filesystem root (required)
    FAKE_ADB_DEVICES   comma-separated serials (default "fake-0001"; empty: no device)
    FAKE_ADB_ABI       `getprop ro.product.cpu.abi` (default arm64-v8a)
    FAKE_ADB_ABILIST   `getprop ro.product.cpu.abilist` (default: FAKE_ADB_ABI)
    FAKE_ADB_WRAPPER   the emulator command the runner's launcher puts in front (e.g. "qemu-aarch64 -cpu max")
    FAKE_ADB_CPUINFO   a file bind-mounted over /proc/cpuinfo while shell commands run (unshare -m; root)
    FAKE_ADB_FREE_KB   if set, `df -k` reports this many free KiB instead of the host's real figure
    FAKE_ADB_LOG       if set, one JSON line per invocation is appended: {"argv": [...]}

Supported: devices, [-s SERIAL] shell CMD..., push LOCAL REMOTE, pull REMOTE LOCAL. Exit statuses and
messages follow real adb (the shell's status is passed back, as adb does on Android 7+).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEVICE_TMP = "/data/local/tmp"


def install(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "adb"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    exe.chmod(0o755)
    return exe


def _fail(message: str) -> int:
    print(f"adb: {message}", file=sys.stderr)
    return 1


def _local(root: Path, remote: str) -> Path:
    if not (remote == DEVICE_TMP or remote.startswith(DEVICE_TMP + "/")):
        raise SystemExit(_fail(f"error: fake device only has {DEVICE_TMP}: {remote}"))
    return root / remote.lstrip("/")


def _shell(root: Path, command: str) -> int:
    words = command.split()
    if words[:1] == ["getprop"]:
        abi = os.environ.get("FAKE_ADB_ABI", "arm64-v8a")
        props = {"ro.product.cpu.abi": abi, "ro.product.cpu.abilist": os.environ.get("FAKE_ADB_ABILIST", abi),
                 "ro.product.model": "FakePhone"}
        print(props.get(words[1], "") if len(words) > 1 else "")
        return 0
    if words[:2] == ["df", "-k"] and "FAKE_ADB_FREE_KB" in os.environ:
        free = int(os.environ["FAKE_ADB_FREE_KB"])
        print("Filesystem     1K-blocks    Used Available Use% Mounted on")
        print(f"/dev/block/dm-5 {free * 2} {free} {free}  50% /data")
        return 0
    mapped = command.replace(DEVICE_TMP, str(root / DEVICE_TMP.lstrip("/")))
    env = {**os.environ, "EDGEGEN_RUNNER_WRAPPER": os.environ.get("FAKE_ADB_WRAPPER", "")}
    cmd = ["/bin/sh", "-c", mapped]
    if cpuinfo := os.environ.get("FAKE_ADB_CPUINFO"):
        cmd = ["unshare", "-m", "/bin/sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec /bin/sh -c "$1"', cpuinfo, mapped]
    return subprocess.run(cmd, cwd=root, env=env).returncode


def main(argv: list[str]) -> int:
    if log := os.environ.get("FAKE_ADB_LOG"):
        with open(log, "a") as f:
            f.write(json.dumps({"argv": argv}) + "\n")
    root = Path(os.environ["FAKE_ADB_ROOT"])
    (root / DEVICE_TMP.lstrip("/")).mkdir(parents=True, exist_ok=True)
    serials = [s for s in os.environ.get("FAKE_ADB_DEVICES", "fake-0001").split(",") if s]
    serial = None
    if argv[:1] == ["-s"]:
        serial, argv = argv[1], argv[2:]
    if not argv:
        return _fail("usage: adb [-s SERIAL] devices|shell|push|pull ...")
    if argv[0] == "devices":
        print("List of devices attached")
        print("".join(f"{s}\tdevice\n" for s in serials))
        return 0
    if serial is not None and serial not in serials:
        return _fail(f"device '{serial}' not found")
    if serial is None and len(serials) != 1:
        return _fail("no devices/emulators found" if not serials else "more than one device/emulator")
    cmd, args = argv[0], argv[1:]
    if cmd == "shell":
        return _shell(root, " ".join(args))
    if cmd == "push" and len(args) == 2:
        src, dst = Path(args[0]), _local(root, args[1])
        if not src.exists():
            return _fail(f"error: cannot stat '{src}': No such file or directory")
        shutil.copy(src, dst / src.name if dst.is_dir() else dst)
        print(f"{src}: 1 file pushed, 0 skipped.")
        return 0
    if cmd == "pull" and len(args) == 2:
        src, dst = _local(root, args[0]), Path(args[1])
        if not src.exists():
            return _fail(f"error: failed to stat remote object '{args[0]}': No such file or directory")
        shutil.copytree(src, dst / src.name if dst.is_dir() else dst) if src.is_dir() else shutil.copy(src, dst)
        print(f"{args[0]}: 1 file pulled, 0 skipped.")
        return 0
    return _fail(f"fake adb does not support: {' '.join(argv)[:80]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
