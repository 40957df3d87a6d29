"""The corpus judge on real audio (issue 33, part 4): its accuracy on held-out real clips (A_real) per head with
chance levels, the real-vs-real floor of its Frechet distance, and what degrading real audio does to both (the scale
a generated set's FD is read on).

    OMP_NUM_THREADS=1 .venv/bin/edgegen judge train --corpus ~/.cache/edgegen/corpus/seed-0 \\
        -o ~/.cache/edgegen/judges/seed-0
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.quality.judge --judge ~/.cache/edgegen/judges/seed-0 \\
        --json benchmarks/quality/judge.json

A_real, chance and the floor FD(validation, held_out) are what `judge train` measured (its judge.json). Each
degraded row puts the 154 validation clips through one change and measures their accuracy against their labels and
their FD to held_out (the floor's pair, so the "none" row is the floor): gain -12 dB (twice the training
augmentation's +-6 dB), white noise at 20 and 0 dB SNR, a 4 kHz low-pass (FFT brick wall), and each clip reversed
in time (the same spectrum per frame, other envelopes and onsets). The last stdout line is one JSON object: the
file's contents.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import cpu_line
from edgegen.common import write_text_atomic
from edgegen.judge import find_set, load_judge
from edgegen.judge.scores import bootstrap_accuracy, correct, fd_interval


def noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.shape)
    return x + n * np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))


def lowpass(x: np.ndarray, hz: float, sr: int) -> np.ndarray:
    spec = np.fft.rfft(x, axis=-1)
    spec[..., np.fft.rfftfreq(x.shape[-1], 1 / sr) > hz] = 0
    return np.fft.irfft(spec, n=x.shape[-1], axis=-1)


CHANGES = {  # name -> (clip [2, n], index) -> changed clip
    "none": lambda x, i: x,
    "gain -12 dB": lambda x, i: x * 10 ** (-12 / 20),
    "noise 20 dB SNR": lambda x, i: noise(x, 20, i),
    "noise 0 dB SNR": lambda x, i: noise(x, 0, i),
    "low-pass 4 kHz": lambda x, i: lowpass(x, 4000, 44100),
    "reversed": lambda x, i: x[:, ::-1].copy(),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge", type=Path, required=True, help="Folder from `edgegen judge train`.")
    ap.add_argument("--json", type=Path, default=None, help="Write the record here too.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    judge = load_judge(args.judge.expanduser())
    meta, sr = judge.meta, judge.net.cfg.sample_rate
    corpus = Path(meta["trained_on"]["corpus"])
    held_out, validation = find_set(corpus / "held_out"), find_set(corpus / "validation")
    clock = time.perf_counter()
    _, ref = judge.run(held_out.clips(sample_rate=sr))
    clips = list(validation.clips(sample_rate=sr))
    truth = judge.encode(list(validation.labels))
    rows = []
    for name, change in CHANGES.items():
        pred, emb = judge.run(change(c, i).astype(np.float32) for i, c in enumerate(clips))
        right = correct(pred, truth)
        rows.append({"change": name, "accuracy": {k: bootstrap_accuracy(v).to_json() for k, v in right.items()},
                     "fd_to_held_out": fd_interval(emb, ref).to_json()})
        print(f"{name:<16} FD {rows[-1]['fd_to_held_out']['value']:7.2f}  "
              + "  ".join(f"{k} {v['value']:.3f}" for k, v in rows[-1]["accuracy"].items()), flush=True)
    real = meta["real"]
    record = {
        "judge": str(args.judge), "machine": cpu_line(), "trained_on": meta["trained_on"], "config": meta["config"],
        "parameters": sum(p.numel() for p in judge.net.parameters()),
        "a_real": {k: {**v, **{f"chance_{c}": round(x, 4) for c, x in real["held_out"]["chance"][k].items()}}
                   for k, v in real["held_out"]["accuracy"].items()},
        "held_out_clips": real["held_out"]["clips"],
        "validation_accuracy": {k: v["value"] for k, v in real["validation"]["accuracy"].items()},
        "fd_floor": real["fd_floor"],
        "degraded_validation": rows,
        "degraded_seconds": round(time.perf_counter() - clock, 1),
    }
    text = json.dumps(record)
    if args.json:
        write_text_atomic(args.json, json.dumps(record, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
