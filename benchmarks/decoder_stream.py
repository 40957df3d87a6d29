"""Whole-sequence vs streaming Oobleck decode: peak memory, time to first chunk, total time, SQNR of the stitch.

    python benchmarks/decoder_stream.py                       # SAO-small decoder, T=256 latents, windows 48,60,64
    python benchmarks/decoder_stream.py --channels 32 -T 64   # reduced config for a slow machine

Each measurement runs in a fresh subprocess so peak memory is not polluted by the previous one. Peak decode memory
is ru_maxrss after the decode minus the resident set just before it (weights and latents excluded), i.e. what the
decode itself adds. Workers run with MALLOC_MMAP_THRESHOLD_=1 MiB so every large tensor is mmapped and handed
back to the OS when freed: otherwise glibc's dynamic threshold keeps freed activations in a fragmented heap and
ru_maxrss measures the allocator's history rather than live tensors (--glibc-default measures that instead; a
device runtime with a planned arena behaves like the mmap case). The decoder is OobleckDecoder(sao-small) with randomize_(seed=2): the same weights as
edgegen.load_pipeline("random:sao-small").decoder, without building the T5 and DiT. Prints a table; the last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from edgegen.components.oobleck import OOBLECK_CONFIGS, OobleckDecoder
from edgegen.metrics import compare
from edgegen.presets import randomize_
from edgegen.streaming import decode_stream, plan_windows, receptive_field


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(*, channels: int, T: int, window: int, overlap: int, out: Path) -> dict:
    """One decode (window 0 = whole sequence) in this process; saves the audio to `out`."""
    cfg = replace(OOBLECK_CONFIGS["sao-small"], channels=channels)
    dec = OobleckDecoder(cfg).eval()
    randomize_(dec, seed=2)  # = load_pipeline("random:sao-small").decoder (modules index 2, seed 0)
    latents = torch.randn(1, cfg.latent_dim, T, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        dec(latents[:, :, :2])  # warm-up: lazy kernel init out of the timings (2 frames: negligible memory)
    base = _rss_mb()
    t0 = time.perf_counter()
    first = None
    with torch.inference_mode():
        if window == 0:
            audio = dec(latents)
            first = time.perf_counter() - t0
        else:
            chunks = []
            for chunk in decode_stream(dec, latents, window=window, overlap=overlap, hop=cfg.hop):
                first = first if first is not None else time.perf_counter() - t0
                chunks.append(chunk)
            audio = torch.cat(chunks, dim=-1)
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    torch.save(audio, out)
    return {"window": window, "overlap": overlap, "peak_mb": round(peak - base, 1), "first_s": round(first, 2),
            "total_s": round(total, 2), "base_rss_mb": round(base, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-T", type=int, default=256, help="latent frames (256 = 11.9 s, SAO-small's maximum)")
    ap.add_argument("--channels", type=int, default=128, help="decoder width (128 = SAO-small)")
    ap.add_argument("--windows", default="48,60,64")
    ap.add_argument("--overlap", type=int, default=None, help="default: the derived receptive field")
    ap.add_argument("--glibc-default", action="store_true", help="keep glibc's dynamic mmap threshold")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # window for one subprocess run
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    rf = receptive_field(OOBLECK_CONFIGS["sao-small"])
    overlap = rf if args.overlap is None else args.overlap
    if args.worker is not None:
        print(json.dumps(worker(channels=args.channels, T=args.T, window=args.worker, overlap=overlap, out=args.out)))
        return

    env = dict(os.environ) if args.glibc_default else {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for window in [0, *map(int, args.windows.split(","))]:
            out = Path(tmp) / f"{window}.pt"
            cmd = [sys.executable, __file__, "-T", str(args.T), "--channels", str(args.channels),
                   "--overlap", str(overlap), "--worker", str(window), "--out", str(out)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            audio = torch.load(out)
            if window == 0:
                whole = audio
                row.update(windows=1, sqnr_db="ref")
            else:
                sqnr = compare(whole, audio).sqnr_db
                row.update(windows=len(plan_windows(args.T, window=window, overlap=overlap)),
                           sqnr_db=round(sqnr, 1) if sqnr != float("inf") else "inf")
            rows.append(row)
            print(f"  done window={window or 'whole'}", file=sys.stderr, flush=True)

    ref = rows[0]
    print(f"Oobleck decoder channels={args.channels} T={args.T} latents, receptive field {rf} frames, "
          f"overlap {overlap}, torch threads {torch.get_num_threads()}, "
          f"malloc {'glibc default' if args.glibc_default else 'mmap >= 1 MiB'}")
    print(f"{'mode':>12} {'windows':>7} {'peak MB':>8} {'mem ÷':>6} {'first s':>8} {'total s':>8} {'SQNR dB':>8}")
    for r in rows:
        mode = "whole" if r["window"] == 0 else f"window {r['window']}"
        print(f"{mode:>12} {r['windows']:>7} {r['peak_mb']:>8.0f} {ref['peak_mb'] / r['peak_mb']:>6.1f} "
              f"{r['first_s']:>8.2f} {r['total_s']:>8.2f} {r['sqnr_db']!s:>8}")
    print(json.dumps({"bench": "decoder_stream", "malloc": "glibc" if args.glibc_default else "mmap1m",
                      "channels": args.channels, "T": args.T, "receptive_field": rf,
                      "overlap": overlap, "rows": rows}))


if __name__ == "__main__":
    main()
