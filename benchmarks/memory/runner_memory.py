"""Peak memory of the native runner (android_demo/runner) on one bundle: without the XNNPACK weight cache, on the run
that builds it, and on a run that maps it, with the audio checked byte-identical across the three.

    .venv/bin/python -m benchmarks.memory.runner_memory out/sao-litert-int8 --runner build/runner-host/edgegen-runner \
        [--runner OTHER/edgegen-runner ...]       (several runners: side by side, one after the other)

Peak RSS is the runner's JSON `peak_rss_mb` (its own VmHWM; runners built before 2026-11-30 report getrusage's
ru_maxrss, which a child started by a larger parent inherits: this script's Python stays far below a full-size
bundle's peak, so there the two agree). Memory does not depend on the machine's speed, so
this may run beside other work (its timings may not); the cache goes to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edgegen.bench import describe_cpu, host_machine


def run(runner: str, bundle: str, out: Path, seconds: float, cache: list[str]) -> dict:
    cmd = [runner, "--bundle", bundle, "--prompt", "rain on a tin roof", "--seconds", str(seconds), "--seed", "0",
           "-o", str(out), *cache]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"runner failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--runner", action="append", help="a runner binary (repeat to compare runners)")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    runners = args.runner or ["build/runner-host/edgegen-runner"]
    print(f"machine: {describe_cpu(host_machine())}")
    results, ok = [], True
    for runner in runners:
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            rows["no cache"] = run(runner, args.bundle, tmp / "off.wav", args.seconds, ["--no-weight-cache"])
            rows["cache built"] = run(runner, args.bundle, tmp / "built.wav", args.seconds,
                                      ["--weight-cache", str(tmp / "cache")])
            rows["cache hit"] = run(runner, args.bundle, tmp / "hit.wav", args.seconds,
                                    ["--weight-cache", str(tmp / "cache")])
            same = len({p.read_bytes() for p in tmp.glob("*.wav")}) == 1
        ok = ok and same
        print(f"runner {runner}")
        for name, r in rows.items():
            print(f"  {name:12s} peak {r['peak_rss_mb']:7.1f} MB  weight_cache {r['weight_cache']}  "
                  f"e2e {r['e2e_s']:.1f} s")
        print(f"  audio byte-identical across the three: {same}")
        results.append({"runner": runner, "identical": same,
                        "peak_rss_mb": {k: round(r["peak_rss_mb"], 1) for k, r in rows.items()}})
    print(json.dumps({"bundle": args.bundle, "seconds": args.seconds, "runs": results}))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
