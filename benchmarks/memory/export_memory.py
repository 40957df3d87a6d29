"""Where a full-size export's memory goes: resident memory of one `edgegen export` per stage it reports.

    .venv/bin/python -m benchmarks.memory.export_memory --backend executorch --recipe int8 --out out/exportmem \
        [-- EXTRA]

Runs `edgegen export` as a child process, reads the stage lines it prints ("[  12.3s] dit  quantize"), and
samples the child's resident memory (VmRSS, split into anonymous and file pages from /proc/PID/status) every
50 ms. Prints, per stage, the RSS on entering it and its peak, and the overall peak (the child's own VmHWM,
which the sampler cannot miss). Writes the same as JSON to --out/export_memory-<backend>-<recipe>.json; an export
that fails prints its error line and exits with its code, writing nothing. Memory
does not depend on speed, so this may run beside other work; the wall times printed may not.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import status

STAGE = re.compile(r"^\[\s*[\d.]+s\]\s+(\S+)\s+(.*)$")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("executorch", "litert"), required=True)
    ap.add_argument("--recipe", default="int8")
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--out", type=Path, default=Path("out/exportmem"))
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("extra", nargs="*", help="more `edgegen export` options, after --")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = args.out / f"{args.backend}-{args.recipe}"
    cmd = [sys.executable, "-m", "edgegen.cli", "export", "-m", args.model, "-t", f"host-{args.backend}",
           "-r", args.recipe, "-o", str(bundle), "--force", *args.extra]
    print(f"machine: {platform.machine()}; command: {' '.join(cmd[2:])}", flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stages: list[dict] = [{"stage": "load model", "t": 0.0, "enter": {}, "peak": {}}]
    lock, stdout = threading.Lock(), []

    hwm = [0.0]  # the child's VmHWM as last read: just before it exits, its true peak

    def sample() -> None:
        while child.poll() is None:
            s = status(child.pid)
            if s:
                hwm[0] = max(hwm[0], s["VmHWM"])
                with lock:
                    cur = stages[-1]
                    if not cur["enter"]:
                        cur["enter"] = s
                    if s["VmRSS"] > cur["peak"].get("VmRSS", 0):
                        cur["peak"] = s
            time.sleep(args.interval)

    def read_stdout() -> None:
        stdout.extend(child.stdout)

    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=read_stdout, daemon=True)]
    for t in threads:
        t.start()
    stderr_tail = []
    for line in child.stderr:
        line = line.rstrip("\n")
        stderr_tail = (stderr_tail + [line])[-20:]
        m = STAGE.match(line)
        if m:
            with lock:
                stages.append({"stage": f"{m.group(1)}: {m.group(2)[:60]}", "t": time.perf_counter() - start,
                               "enter": status(child.pid), "peak": {}})
            print(f"[{time.perf_counter() - start:7.1f}s] {m.group(1)} {m.group(2)[:80]}", flush=True)
    child.wait()
    for t in threads:
        t.join(timeout=5)
    if child.returncode != 0:  # the export's own error line; no table or JSON for an export that did not run
        error = next((ln for ln in reversed(stderr_tail) if ln.startswith("edgegen: error:")), None)
        print(error or "\n".join(stderr_tail), file=sys.stderr)
        sys.exit(child.returncode)
    hwm = hwm[0]
    wall = time.perf_counter() - start
    reported = re.search(r"peak RSS (\d+) MB", "".join(stdout))
    print(f"\nexit 0, {wall:.0f} s; peak (VmHWM) {hwm:.0f} MB"
          + (f"; the CLI's ru_maxrss {reported.group(1)} MB" if reported else ""))
    print("\n| stage | starts at s | RSS entering MB | peak RSS MB | anon / file at peak MB |")
    print("|---|---:|---:|---:|---:|")
    for st in stages:
        p = st["peak"]
        print(f"| {st['stage']} | {st['t']:.0f} | {st['enter'].get('VmRSS', 0):.0f} | {p.get('VmRSS', 0):.0f} | "
              f"{p.get('RssAnon', 0):.0f} / {p.get('RssFile', 0):.0f} |")
    (args.out / f"export_memory-{args.backend}-{args.recipe}.json").write_text(json.dumps(
        {"command": cmd[2:], "wall_s": round(wall, 1), "peak_mb": round(hwm, 1),
         "stages": stages}, indent=2))


if __name__ == "__main__":
    main()
