"""The A15-A16 probes (benchmarks/arc/RESULTS_arc.md): one ARC variant trained on the base and caches of an earlier
`evidence.py --work REF` run, every snapshot scored on the validation split only (the held-out split is not read).

    .venv/bin/python benchmarks/arc/probes-2026-12-05/dev.py REF NAME '{"head_channels": 64}'

REF/../NAME gets the run (symlinks to REF's caches, base and judge); the JSON overrides the ARC settings below
(evidence.py's defaults). ref.log here is A13's run reproduced (`evidence.py --no-ablation --stop-after-validation`),
the other logs come from this script (two at a time, one torch thread each).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import evidence  # noqa: E402

from edgegen.train.arc import ARCConfig, train_arc  # noqa: E402

DEFAULTS = dict(lr_generator=2e-5, lr_discriminator=2e-4, disc_warmup_steps=100, lr_generator_half_life=600,
                ema_beta=0.998, contrastive=True, weight_contrastive=1.0, head_channels=32, batch_size=16,
                disc_mean=-1.0, chain_steps=(4, 8), chain_fraction=0.5)


def main() -> None:
    torch.set_num_threads(1)
    ref, name, over = Path(sys.argv[1]).resolve(), sys.argv[2], json.loads(sys.argv[3])
    steps = over.pop("arc_steps", 1300)
    if "chain_steps" in over:
        over["chain_steps"] = tuple(over["chain_steps"])
    work = ref.parent / name
    work.mkdir(exist_ok=True)
    for f in ("train.safetensors", "val.safetensors", "real.safetensors", "judge.pt", "base"):
        if not (work / f).exists():
            os.symlink(ref / f, work / f)
    start = time.time()
    if not (work / "arc" / "model").exists():
        train_arc(model=ref / "base" / "model", t5=ref / "base" / "t5", cache=work / "train.safetensors",
                  out=work / "arc", cfg=ARCConfig(**{**DEFAULTS, **over}), steps=steps, save_every=steps,
                  log_every=100, snapshot_every=100, log=lambda r: None)
    print(name, "trained", round(time.time() - start), flush=True)
    best, table = evidence.task_choose(work, "arc")
    for row in table:
        print(json.dumps(row), flush=True)
    print("BEST", json.dumps(best), "max", max(best["val_fd4"], best["val_fd8"]), flush=True)


if __name__ == "__main__":
    main()
