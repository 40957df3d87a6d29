"""Full-size exports: random:sao-small x {executorch, litert} x {int8, mobile}; time and peak memory each.

    .venv/bin/python -m benchmarks.memory.export_fullsize --out out/fullsize [--recipes int8,mobile] [--backends ...]

Each export runs in its own process (`edgegen export`), so its peak RSS (ru_maxrss, printed by the CLI) is
that export's alone. Writes a Markdown table to stdout and `export_fullsize.json` into --out; the bundles
stay in --out for the speed benchmarks.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("out/fullsize"))
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--recipes", default="int8,mobile")
    ap.add_argument("--backends", default="executorch,litert")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for backend in args.backends.split(","):
        for recipe in args.recipes.split(","):
            out = args.out / f"sao-small-{backend}-{recipe}"
            cmd = [sys.executable, "-m", "edgegen.cli", "export", "-m", args.model, "-t", f"host-{backend}",
                   "-r", recipe, "-o", str(out), "--force"]
            start = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            peak = re.search(r"peak RSS (\d+) MB", res.stdout)
            sizes = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(text_encoder|dit|decoder)\s+\S+\s+([\d.]+)",
                                                                         res.stdout, re.M)}
            row = {"backend": backend, "recipe": recipe, "ok": res.returncode == 0, "wall_s": round(wall, 1),
                   "peak_rss_mb": int(peak.group(1)) if peak else None, "sizes_mb": sizes,
                   "error": None if res.returncode == 0 else res.stderr.strip().splitlines()[-1][:300]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "export_fullsize.json").write_text(json.dumps({"machine": platform.machine(), "rows": rows}, indent=2))
    print("\n| backend | recipe | export time (s) | peak RSS (MB) | text_encoder MB | dit MB | decoder MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["sizes_mb"]
        print(f"| {r['backend']} | {r['recipe']} | {r['wall_s']} | {r['peak_rss_mb']} | {s.get('text_encoder', '-')} | "
              f"{s.get('dit', '-')} | {s.get('decoder', '-')} |" + ("" if r["ok"] else f" FAILED: {r['error']}"))


if __name__ == "__main__":
    main()
