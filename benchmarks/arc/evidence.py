"""ARC evidence on the synthetic text-to-audio task: does 8-step ARC beat the 8-step base, approach the
50/100-step base, and what does dropping the contrastive term do to prompt adherence?

    .venv/bin/python benchmarks/arc/evidence.py --work /tmp/arc_evidence      (~10 min on 2 idle CPU cores)

Stages (each is skipped when its output already exists in --work):
  1. synthetic corpus: train (seed 0) and held-out real (seed 1) clips, 8 classes x 3 captions
  2. latent caches with random:tiny's (seeded, untrained) VAE encoder and T5
  3. base DiT (width 128, 4 blocks) trained from scratch with rectified flow
  4. ARC post-training, with and without the contrastive term (same seed, same steps)
  5. a latent classifier trained on the train latents' labels: the fixed feature extractor
  6. generate 16 samples for each of the 24 captions with every system from the same initial noise, measure
     FD (Frechet distance to the held-out real latents) in the classifier's embedding and in a PCA-32 space,
     adherence (classifier accuracy against the prompt's label) and diversity (mean within-prompt distance,
     relative to the real data's).
Everything is measured in latent space: random:tiny's VAE is untrained, so its decoded audio is meaningless.
The last stdout line is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import edgegen
from edgegen.sampler import pingpong, schedule
from edgegen.train.arc import ARCConfig, train_arc
from edgegen.train.data import SYNTH_CLASSES, LatentData, build_cache, read_captions, write_synthetic
from edgegen.train.rf import RFConfig, train_rf

DIT = {"embed_dim": 128, "depth": 4, "num_heads": 2}
PER_PROMPT = 16


def stage(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_data(work: Path) -> tuple[Path, Path]:
    pipe = edgegen.load_pipeline("random:tiny")
    paths = []
    for name, count, seed in (("train", 800, 0), ("real", 384, 1)):
        cache = work / f"{name}.safetensors"
        if not cache.exists():
            caps = write_synthetic(work / name, count=count, sample_rate=pipe.sample_rate,
                                   seconds=pipe.max_seconds, seed=seed)
            stage(f"{name}: " + build_cache(pipe=pipe, records=read_captions(caps), root=caps.parent,
                                            out=cache).summary())
        paths.append(cache)
    return paths[0], paths[1]


class Classifier(nn.Module):
    """Latents [B, 64, T] -> (logits [B, 8], embedding [B, 64])."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(64, 64, 3, padding=1), nn.GELU(), nn.Conv1d(64, 64, 3, padding=1),
                                  nn.GELU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 64), nn.GELU())
        self.out = nn.Linear(64, n_classes)

    def forward(self, x):
        e = self.body(x)
        return self.out(e), e


def train_classifier(train: LatentData, real: LatentData, labels: list[str]) -> tuple[Classifier, float]:
    torch.manual_seed(0)
    clf = Classifier(len(labels))
    y = torch.tensor([labels.index(lab) for lab in train.labels])
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        idx = torch.randint(len(train), (64,), generator=g)
        loss = nn.functional.cross_entropy(clf(train.latents[idx])[0], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval().requires_grad_(False)
    yr = torch.tensor([labels.index(lab) for lab in real.labels])
    return clf, float((clf(real.latents)[0].argmax(1) == yr).float().mean())


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a [N, F], b [M, F] (float64, eigh sqrtm)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


@torch.no_grad()
def euler(velocity, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain RF Euler on a uniform t grid 1 -> 0: x <- x + (t_next - t) v."""
    ts = torch.linspace(1, 0, steps + 1)
    x = noise
    for i in range(steps):
        x = x + (ts[i + 1] - ts[i]) * velocity(x, torch.full((x.shape[0],), float(ts[i])))
    return x


def load_dit(model_dir: Path, t5: Path):
    return edgegen.load_pipeline(model_dir, t5=t5).dit


@torch.no_grad()
def generate(dit, real: LatentData, *, sampler: str, steps: int, seed: int = 1234) -> tuple[torch.Tensor, list]:
    """PER_PROMPT samples for every caption in the cache: latents [U * PER_PROMPT, 64, T] and their captions."""
    U = len(real.captions)
    cross = real.cross.repeat_interleave(PER_PROMPT, 0)
    glob = real.glob.repeat_interleave(PER_PROMPT, 0)
    shape = (U * PER_PROMPT, *real.latents.shape[1:])
    g = torch.Generator().manual_seed(seed)

    def velocity(x, t):
        return dit(x, t, cross, glob)

    if sampler == "euler":
        x = euler(velocity, torch.randn(shape, generator=g), steps)
    else:
        noise = torch.randn((steps, *shape), generator=g)
        x = pingpong(velocity, noise, schedule(steps))
    return x, [c for c in real.captions for _ in range(PER_PROMPT)]


def diversity(x: torch.Tensor, groups: list) -> float:
    """Mean pairwise L2 distance between latents that share a caption."""
    out = []
    for c in sorted(set(groups)):
        z = x[[i for i, g in enumerate(groups) if g == c]].flatten(1)
        out.append(torch.pdist(z).mean())
    return float(torch.stack(out).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/arc_evidence"))
    ap.add_argument("--rf-steps", type=int, default=1200)
    ap.add_argument("--arc-steps", type=int, default=100)
    ap.add_argument("--arc-lr", type=float, default=1e-5)
    ap.add_argument("--arc-batch", type=int, default=16)
    args = ap.parse_args()
    work, clock = args.work, time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    train_cache, real_cache = make_data(work)
    train, real = LatentData.load(train_cache), LatentData.load(real_cache)
    base = work / "base"
    if not (base / "model").exists():
        stage("training the RF base")
        train_rf(model="random:tiny", t5=None, cache=train_cache, out=base, dit=DIT, steps=args.rf_steps,
                 cfg=RFConfig(lr=1e-3, ema_beta=0.999, batch_size=32), save_every=args.rf_steps, log_every=100,
                 log=lambda r: stage(f"rf {r}"))
    t5 = base / "t5"
    arc_runs = {"arc": 1.0, "arc_no_contrastive": 0.0}
    for name, weight in arc_runs.items():
        if not (work / name / "model").exists():
            stage(f"ARC post-training: {name}")
            cfg = ARCConfig(lr_generator=args.arc_lr, lr_discriminator=args.arc_lr, ema_beta=0.999,
                            contrastive=weight > 0, weight_contrastive=weight, head_channels=32, batch_size=args.arc_batch)
            train_arc(model=base / "model", t5=t5, cache=train_cache, out=work / name, cfg=cfg,
                      steps=args.arc_steps, save_every=args.arc_steps, log_every=100, log=lambda r: stage(f"{r}"))
    labels = list(SYNTH_CLASSES)
    clf, real_acc = train_classifier(train, real, labels)
    stage(f"classifier accuracy on held-out real latents: {real_acc:.3f}")
    label_of = {}
    for i, c in enumerate(real.cond_index.tolist()):
        label_of[real.captions[c]] = real.labels[i]
    pca_mean = train.latents.flatten(1).mean(0)
    _, _, V = torch.pca_lowrank(train.latents.flatten(1) - pca_mean, q=32, center=False)

    def features(x):
        return clf(x)[1].double().numpy(), ((x.flatten(1) - pca_mean) @ V).double().numpy()

    real_cls, real_pca = features(real.latents)
    real_div = diversity(real.latents, [real.captions[c] for c in real.cond_index.tolist()])
    systems = [("base", "euler", 8), ("base", "pingpong", 8), ("base", "euler", 50), ("base", "euler", 100),
               ("arc", "pingpong", 8), ("arc", "pingpong", 4), ("arc", "pingpong", 1),
               ("arc_no_contrastive", "pingpong", 8)]
    rows = []
    for model, sampler, steps in systems:
        dit = load_dit(work / model / "model", t5)
        start = time.perf_counter()
        x, caps = generate(dit, real, sampler=sampler, steps=steps)
        sec = time.perf_counter() - start
        logits, _ = clf(x)
        y = torch.tensor([labels.index(label_of[c]) for c in caps])
        f_cls, f_pca = features(x)
        rows.append({"model": model, "sampler": sampler, "steps": steps,
                     "fd_classifier": round(frechet(f_cls, real_cls), 3), "fd_pca32": round(frechet(f_pca, real_pca), 2),
                     "adherence": round(float((logits.argmax(1) == y).float().mean()), 3),
                     "diversity": round(diversity(x, caps) / real_div, 3), "gen_sec": round(sec, 2)})
        stage(json.dumps(rows[-1]))
    print("\n| model | sampler | steps | FD (classifier emb.) | FD (PCA-32) | adherence | diversity / real |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['sampler']} | {r['steps']} | {r['fd_classifier']} | {r['fd_pca32']} | "
              f"{r['adherence']} | {r['diversity']} |")
    print(f"\nreal held-out latents: classifier accuracy {real_acc:.3f}; total {time.perf_counter() - clock:.0f} s")
    print(json.dumps({"rows": rows, "classifier_real_accuracy": real_acc,
                      "total_sec": round(time.perf_counter() - clock, 1)}))


if __name__ == "__main__":
    main()
