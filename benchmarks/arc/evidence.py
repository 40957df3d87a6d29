"""ARC evidence on the synthetic text-to-audio task (issue 12): does ARC at 4 and 8 ping-pong steps beat the base at
8 Euler steps and reach the base at 50, with the checkpoint chosen on a validation split and every row measured on a
held-out set with two sampling seeds? And what does dropping the contrastive term (lambda = 0) do to adherence?

    .venv/bin/python -m benchmarks.arc.evidence --work /tmp/arc_evidence      (2 worker processes; see arc/JOURNAL.md)

--jobs 2 (default) runs the stages as tasks in two worker processes of one torch thread each (two threads of one
process spin-wait badly on a shared 2-core machine): the validation and held-out caches and the classifier while the
base trains, the ARC run and the lambda = 0 run side by side, and the choosing and scoring split between the two.
--jobs 1 runs everything in this process. Every task seeds its own randomness, so --jobs changes the order of the
work, not the numbers (up to float rounding when the thread count differs).

Stages (each is skipped when its output already exists in --work):
  1. synthetic corpus, 8 classes x 3 captions: train (seed 0, 800 clips), validation (seed 2, 192), held-out (seed 1,
     384); latent caches with random:tiny's (seeded, untrained) VAE encoder and T5
  2. base DiT (width 128, 4 blocks) trained from scratch with rectified flow; with --latent-norm (default) on latents
     divided by the training latents' std, a scale stored as the model's pretransform.scale
  3. ARC post-training with and without the contrastive term (same seed, steps and settings); the G and EMA weights
     are kept every --snapshot-every steps after the D-only warm-up
  4. a latent classifier trained on the train latents' labels: the fixed feature extractor
  5. choose, per ARC run, the snapshot (G or EMA weights) with the lowest max(FD 4 steps, FD 8 steps) on the
     validation split (one sampling seed); then measure every row once on the held-out split with two sampling seeds:
     FD (Frechet distance to the held-out latents) in the classifier's embedding and in a PCA-32 space, adherence
     (classifier accuracy against the prompt's label), diversity (mean within-prompt distance / the real data's);
     the floor row compares real training latents with the held-out ones
Everything is measured in latent space: random:tiny's VAE is untrained, so its decoded audio is meaningless. The base's
Euler uses a uniform t grid (stronger at 8 steps than upstream's logSNR grid); ping-pong uses edgegen's logSNR schedule.
The last stdout line is one JSON object: `rows` (model, sampler, steps, fd_classifier = the mean over the two seeds,
and the rest), `checkpoints`, `val_base`, `diagnostics`, `verdict`, `cpu`, `stage_ends_sec`.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

import edgegen
from benchmarks.common import cpu_line
from edgegen.judge.scores import frechet
from edgegen.sampler import pingpong, schedule
from edgegen.train.arc import ARCConfig, train_arc
from edgegen.train.data import SYNTH_CLASSES, LatentData, build_cache, read_captions, write_synthetic
from edgegen.train.rf import RFConfig, train_rf

DIT = {"embed_dim": 128, "depth": 4, "num_heads": 2}
SPLITS = (("train", 800, 0), ("real", 384, 1), ("val", 192, 2))  # name, clips, corpus seed
PER_PROMPT = {"real": 16, "val": 8}  # samples per caption: 384 held-out, 192 validation
SEEDS = (1234, 4321)                 # sampling seeds of every held-out row; validation uses the first


def stage(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


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


@torch.no_grad()
def euler(velocity, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain RF Euler on a uniform t grid 1 -> 0: x <- x + (t_next - t) v."""
    ts = torch.linspace(1, 0, steps + 1)
    x = noise
    for i in range(steps):
        x = x + (ts[i + 1] - ts[i]) * velocity(x, torch.full((x.shape[0],), float(ts[i])))
    return x


@torch.no_grad()
def generate(dit, scale: float, split: LatentData, *, per_prompt: int, sampler: str, steps: int,
             seed: int) -> tuple[torch.Tensor, list]:
    """per_prompt samples for every caption of the split: latents [U * per_prompt, 64, T] (the DiT's output x scale,
    back in the cache's units) and their captions."""
    U = len(split.captions)
    cross = split.cross.repeat_interleave(per_prompt, 0)
    glob = split.glob.repeat_interleave(per_prompt, 0)
    shape = (U * per_prompt, *split.latents.shape[1:])
    g = torch.Generator().manual_seed(seed)

    def velocity(x, t):
        return dit(x, t, cross, glob)

    if sampler == "euler":
        x = euler(velocity, torch.randn(shape, generator=g), steps)
    else:
        x = pingpong(velocity, torch.randn((steps, *shape), generator=g), schedule(steps))
    return x * scale, [c for c in split.captions for _ in range(per_prompt)]


def diversity(x: torch.Tensor, groups: list) -> float:
    """Mean pairwise L2 distance between latents that share a caption."""
    out = []
    for c in sorted(set(groups)):
        z = x[[i for i, g in enumerate(groups) if g == c]].flatten(1)
        out.append(torch.pdist(z).mean())
    return float(torch.stack(out).mean())


class Judge:
    """Scores generated latents against one split's real latents with the fixed classifier and PCA."""

    def __init__(self, clf: Classifier, train: LatentData, split: LatentData, labels: list[str], *,
                 pca: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.clf, self.labels = clf, labels
        if pca is None:
            self.pca_mean = train.latents.flatten(1).mean(0)
            _, _, self.V = torch.pca_lowrank(train.latents.flatten(1) - self.pca_mean, q=32, center=False)
        else:
            self.pca_mean, self.V = pca
        self.real_cls, self.real_pca = self.features(split.latents)
        self.real_div = diversity(split.latents, [split.captions[c] for c in split.cond_index.tolist()])
        self.label_of = {split.captions[c]: split.labels[i] for i, c in enumerate(split.cond_index.tolist())}

    def features(self, x):
        return self.clf(x)[1].double().numpy(), ((x.flatten(1) - self.pca_mean) @ self.V).double().numpy()

    def score(self, x: torch.Tensor, caps: list | None) -> dict:
        f_cls, f_pca = self.features(x)
        out = {"fd_classifier": frechet(f_cls, self.real_cls), "fd_pca32": frechet(f_pca, self.real_pca)}
        if caps is not None:
            y = torch.tensor([self.labels.index(self.label_of[c]) for c in caps])
            out["adherence"] = float((self.clf(x)[0].argmax(1) == y).float().mean())
            out["diversity"] = diversity(x, caps) / self.real_div
        return out


def load_base(work: Path):
    pipe = edgegen.load_pipeline(work / "base" / "model", t5=work / "base" / "t5")
    return pipe.dit.eval(), pipe.config.vae_scale


def snapshot_dit(base_dit, path: Path, kind: str):
    """A copy of the base DiT holding the snapshot's `kind` ("G" or "ema") weights."""
    import copy

    tensors = load_file(str(path))
    dit = copy.deepcopy(base_dit)
    dit.load_state_dict({k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(kind + "/")})
    return dit.eval()


def choose_checkpoint(run: Path, base_dit, scale: float, val: LatentData, judge: Judge) -> tuple[dict, list[dict]]:
    """Every snapshot of the run (G and EMA weights) scored on the validation split at 4 and 8 ping-pong steps with
    the first sampling seed; the chosen one minimises max(FD 4, FD 8) in the classifier embedding."""
    table = []
    for path in sorted((run / "snapshots").glob("step_*.safetensors")):
        step = int(path.stem.split("_")[1])
        for kind in ("ema", "G"):
            dit = snapshot_dit(base_dit, path, kind)
            fds = {}
            for steps in (4, 8):
                x, _ = generate(dit, scale, val, per_prompt=PER_PROMPT["val"], sampler="pingpong", steps=steps,
                                seed=SEEDS[0])
                fds[steps] = round(judge.score(x, None)["fd_classifier"], 2)
            table.append({"run": run.name, "step": step, "weights": kind, "val_fd4": fds[4], "val_fd8": fds[8],
                          "out_std": round(float(x.std()), 3)})
            stage(json.dumps(table[-1]))
    best = min(table, key=lambda r: (max(r["val_fd4"], r["val_fd8"]), r["step"]))
    return best, table


def diagnostics(run: Path, real_std: float) -> dict:
    """Training diagnostics from the run's log.jsonl: the D loss at the end of the warm-up, and means over the first
    and the last quarter of the alternating phase."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    warm = next((r["warmup_d"] for r in records if "warmup_d" in r), None)
    gan = [r for r in records if r.get("phase") == "gan"]
    keys = ("d", "d_gap", "contrastive", "r1", "r2", "g", "out_std", "g_grad_norm", "d_grad_norm")

    def mean(rows):
        return {k: round(float(np.mean([r[k] for r in rows if k in r])), 4) for k in keys if any(k in r for r in rows)}

    q = max(1, len(gan) // 4)
    return {"run": run.name, "warmup_end_d": warm, "first_quarter": mean(gan[:q]), "last_quarter": mean(gan[-q:]),
            "real_std": round(real_std, 3), "sec": records[-1].get("sec")}


# --- stages run as tasks: in `--jobs` worker processes of one torch thread each, or inline with --jobs 1 ----------

def init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class Inline:
    """The executor of --jobs 1: every task runs at once in this process."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait: bool = True) -> None:
        pass


@functools.lru_cache(maxsize=None)
def load_split(work: Path, name: str) -> LatentData:
    return LatentData.load(work / f"{name}.safetensors")


@functools.lru_cache(maxsize=None)
def load_base_cached(work: Path):
    return load_base(work)


@functools.lru_cache(maxsize=None)
def load_judge(work: Path, split: str) -> Judge:
    """The judge of `split` from work/judge.pt (the classifier and the PCA basis, fixed once by task_judge)."""
    state = torch.load(work / "judge.pt")
    clf = Classifier(len(SYNTH_CLASSES))
    clf.load_state_dict(state["clf"])
    clf.eval().requires_grad_(False)
    return Judge(clf, load_split(work, "train"), load_split(work, split), list(SYNTH_CLASSES),
                 pca=(state["pca_mean"], state["V"]))


def task_cache(work: Path, name: str, count: int, seed: int) -> None:
    cache = work / f"{name}.safetensors"
    if not cache.exists():
        pipe = edgegen.load_pipeline("random:tiny")
        caps = write_synthetic(work / name, count=count, sample_rate=pipe.sample_rate, seconds=pipe.max_seconds,
                               seed=seed)
        stage(f"{name}: " + build_cache(pipe=pipe, records=read_captions(caps), root=caps.parent,
                                        out=cache).summary())


def task_base(work: Path, rf_steps: int, latent_norm: bool) -> None:
    if (work / "base" / "model").exists():
        return
    scale = float(load_split(work, "train").latents.std()) if latent_norm else 1.0
    stage(f"training the RF base (latent scale {scale:.3f})")
    train_rf(model="random:tiny", t5=None, cache=work / "train.safetensors", out=work / "base", dit=DIT,
             steps=rf_steps, cfg=RFConfig(lr=1e-3, ema_beta=0.999, batch_size=32, latent_scale=scale),
             save_every=rf_steps, log_every=200, log=lambda r: stage(f"rf {r}"))


def task_judge(work: Path) -> float:
    """Trains the classifier, fixes the PCA basis (seeded), saves both to work/judge.pt; returns the classifier's
    accuracy on the held-out real latents."""
    train, real = load_split(work, "train"), load_split(work, "real")
    clf, acc = train_classifier(train, real, list(SYNTH_CLASSES))
    mean = train.latents.flatten(1).mean(0)
    torch.manual_seed(0)
    _, _, V = torch.pca_lowrank(train.latents.flatten(1) - mean, q=32, center=False)
    torch.save({"clf": clf.state_dict(), "pca_mean": mean, "V": V, "real_acc": acc}, work / "judge.pt")
    stage(f"classifier accuracy on held-out real latents: {acc:.3f}")
    return acc


def task_arc(work: Path, name: str, weight: float, a: dict) -> None:
    if (work / name / "model").exists():
        return
    stage(f"ARC post-training: {name}")
    cfg = ARCConfig(lr_generator=a["lr_g"], lr_discriminator=a["lr_d"], disc_warmup_steps=a["warmup"],
                    lr_generator_half_life=a["half_life"], ema_beta=a["ema_beta"], contrastive=weight > 0,
                    weight_contrastive=weight, head_channels=a["head_channels"], batch_size=a["arc_batch"],
                    disc_mean=a["disc_mean"], chain_steps=tuple(int(v) for v in a["chain"].split(",") if v),
                    chain_fraction=a["chain_fraction"])
    base = work / "base"
    train_arc(model=base / "model", t5=base / "t5", cache=work / "train.safetensors", out=work / name, cfg=cfg,
              steps=a["arc_steps"], save_every=a["arc_steps"], log_every=40, snapshot_every=a["snapshot_every"],
              log=lambda r: stage(f"{name} {r}"))


def task_choose(work: Path, name: str) -> tuple[dict, list[dict]]:
    base_dit, scale = load_base_cached(work)
    return choose_checkpoint(work / name, base_dit, scale, load_split(work, "val"), load_judge(work, "val"))


def task_val_base(work: Path) -> list[dict]:
    """The base on the validation split (first sampling seed): the reference the choice can be read against."""
    base_dit, scale = load_base_cached(work)
    val, judge = load_split(work, "val"), load_judge(work, "val")
    out = []
    for sampler, steps in (("euler", 8), ("euler", 50)):
        x, _ = generate(base_dit, scale, val, per_prompt=PER_PROMPT["val"], sampler=sampler, steps=steps,
                        seed=SEEDS[0])
        out.append({"model": "base", "sampler": sampler, "steps": steps,
                    "val_fd": round(judge.score(x, None)["fd_classifier"], 2)})
        stage(json.dumps(out[-1]))
    return out


def task_row(work: Path, model: str, choice: dict | None, sampler: str, steps: int, seed: int,
             per_prompt: int) -> dict:
    """One held-out row at one sampling seed."""
    base_dit, scale = load_base_cached(work)
    dit = base_dit if choice is None else snapshot_dit(
        base_dit, work / model / "snapshots" / f"step_{choice['step']:06d}.safetensors", choice["weights"])
    start = time.perf_counter()
    x, caps = generate(dit, scale, load_split(work, "real"), per_prompt=per_prompt, sampler=sampler, steps=steps,
                       seed=seed)
    out = {**load_judge(work, "real").score(x, caps), "std": float(x.std()), "sec": time.perf_counter() - start}
    stage(f"{model} {sampler} {steps} seed {seed}: {json.dumps({k: round(v, 3) for k, v in out.items()})}")
    return out


SYSTEMS = [("base", "euler", 8), ("base", "pingpong", 8), ("base", "euler", 50), ("arc", "pingpong", 1),
           ("arc", "pingpong", 4), ("arc", "pingpong", 8), ("arc_no_contrastive", "pingpong", 4),
           ("arc_no_contrastive", "pingpong", 8)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/arc_evidence"))
    ap.add_argument("--jobs", type=int, default=2,
                    help="worker processes of one torch thread each (the two ARC runs, the caches and the scoring "
                         "run side by side); 1: everything in this process")
    ap.add_argument("--rf-steps", type=int, default=1200)
    ap.add_argument("--latent-norm", action=argparse.BooleanOptionalAction, default=True,
                    help="train the base on latents / their std (stored as pretransform.scale)")
    ap.add_argument("--arc-steps", type=int, default=1300, help="total, the D-only warm-up included")
    ap.add_argument("--warmup", type=int, default=100, help="D-only steps")
    ap.add_argument("--lr-g", type=float, default=2e-5)
    ap.add_argument("--lr-d", type=float, default=2e-4)
    ap.add_argument("--half-life", type=int, default=600, help="G steps per halving of G's lr (0: constant)")
    ap.add_argument("--disc-mean", type=float, default=-1.0,
                    help="D's noise level s = sigmoid(N(disc_mean, 1)) (upstream: 0)")
    ap.add_argument("--arc-batch", type=int, default=16)
    ap.add_argument("--head-channels", type=int, default=32, help="D's ConvNeXt head width (A15 tried 64)")
    ap.add_argument("--ema-beta", type=float, default=0.998)
    ap.add_argument("--chain", default="4,8",
                    help="ping-pong step counts whose chains G is also trained on (self-forcing); '' = plain ARC")
    ap.add_argument("--chain-fraction", type=float, default=0.5, help="share of steps whose fake comes from a chain")
    ap.add_argument("--snapshot-every", type=int, default=100)
    ap.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                    help="also train and score the lambda = 0 run")
    ap.add_argument("--per-prompt", type=int, default=PER_PROMPT["real"],
                    help="held-out samples per caption and sampling seed (24 captions)")
    ap.add_argument("--stop-after-validation", action="store_true",
                    help="train and choose on the validation split, print the choice, and stop (for choosing "
                         "settings without touching the held-out split)")
    args = ap.parse_args()
    work, clock = args.work.resolve(), time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    if args.jobs > 1:
        torch.set_num_threads(1)
    cpu = cpu_line()
    stage(f"CPU: {cpu}; jobs {args.jobs}")
    if args.jobs > 1:
        ex = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                                 initargs=(max(1, (os.cpu_count() or 1) // args.jobs),))
    else:
        ex = Inline()
    times = {}
    try:
        # 1-2: the train cache, then the base on it while the validation and held-out caches and the judge follow
        caches = {name: ex.submit(task_cache, work, name, count, seed) for name, count, seed in SPLITS}
        caches["train"].result()
        times["train cache"] = time.perf_counter() - clock
        f_base = ex.submit(task_base, work, args.rf_steps, args.latent_norm)
        for f in caches.values():
            f.result()
        f_judge = ex.submit(task_judge, work)
        f_base.result()
        times["base"] = time.perf_counter() - clock
        # 3: the ARC runs side by side
        arc_runs = {"arc": 1.0, "arc_no_contrastive": 0.0} if args.ablation else {"arc": 1.0}
        f_arcs = {ex.submit(task_arc, work, name, weight, vars(args)): name for name, weight in arc_runs.items()}
        real_acc = f_judge.result()
        # 5: choose on validation as each run ends; the base's held-out rows fill the gaps
        f_choose, f_rows = {}, {}
        f_val_base = None
        for f in as_completed(f_arcs):
            f.result()
            name = f_arcs[f]
            times[f"{name} trained"] = time.perf_counter() - clock
            f_choose[name] = ex.submit(task_choose, work, name)
            if f_val_base is None:
                f_val_base = ex.submit(task_val_base, work)
                if not args.stop_after_validation:
                    for model, sampler, steps in SYSTEMS:
                        if model == "base":
                            for seed in SEEDS:
                                f_rows[(model, sampler, steps, seed)] = ex.submit(task_row, work, model, None,
                                                                                  sampler, steps, seed,
                                                                                  args.per_prompt)
        choice, checkpoints = {}, []
        for name in arc_runs:
            best, table = f_choose[name].result()
            choice[name] = {"step": best["step"], "weights": best["weights"]}
            checkpoints += table
            stage(f"{name}: chose step {best['step']} ({best['weights']} weights) on validation")
            if not args.stop_after_validation:
                for model, sampler, steps in SYSTEMS:
                    if model == name:
                        for seed in SEEDS:
                            f_rows[(model, sampler, steps, seed)] = ex.submit(task_row, work, model, choice[name],
                                                                              sampler, steps, seed,
                                                                              args.per_prompt)
        val_base = f_val_base.result()
        if args.stop_after_validation:
            print(json.dumps({"chosen": choice, "checkpoints": checkpoints, "val_base": val_base,
                              "total_sec": round(time.perf_counter() - clock, 1)}))
            return
        scores = {k: f.result() for k, f in f_rows.items()}
    finally:
        ex.shutdown(wait=True)
    times["scored"] = time.perf_counter() - clock

    train, real = load_split(work, "train"), load_split(work, "real")
    real_std = float(train.latents.std())
    judge = load_judge(work, "real")
    rows = []
    g = torch.Generator().manual_seed(0)
    floor = [judge.score(train.latents[torch.randperm(len(train), generator=g)[:len(real)]], None) for _ in SEEDS]
    rows.append({"model": "real_train", "sampler": "data", "steps": 0,
                 "fd_classifier": round(float(np.mean([f["fd_classifier"] for f in floor])), 2),
                 "fd_classifier_seeds": [round(f["fd_classifier"], 2) for f in floor],
                 "fd_pca32": round(float(np.mean([f["fd_pca32"] for f in floor])), 2),
                 "adherence": round(real_acc, 3), "diversity": 1.0})
    for model, sampler, steps in SYSTEMS:
        if model not in ("base", *choice):
            continue
        per_seed = [scores[(model, sampler, steps, seed)] for seed in SEEDS]
        avg = {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
        rows.append({"model": model, "sampler": sampler, "steps": steps,
                     "fd_classifier": round(avg["fd_classifier"], 2),
                     "fd_classifier_seeds": [round(s["fd_classifier"], 2) for s in per_seed],
                     "fd_pca32": round(avg["fd_pca32"], 2), "adherence": round(avg["adherence"], 3),
                     "diversity": round(avg["diversity"], 3), "std_ratio": round(avg["std"] / real_std, 3),
                     "gen_sec": round(avg["sec"], 2)})
    diags = [diagnostics(work / name, real_std) for name in choice]

    print("\n| model | sampler | steps | FD classifier (seed A / B) | FD PCA-32 | adherence | diversity / real |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        a, b = r["fd_classifier_seeds"]
        print(f"| {r['model']} | {r['sampler']} | {r['steps']} | {r['fd_classifier']} ({a} / {b}) | "
              f"{r['fd_pca32']} | {r['adherence']} | {r['diversity']} |")
    print("\nvalidation FD (classifier), per snapshot: run | step | weights | 4 steps | 8 steps | output std")
    for c in checkpoints:
        print(f"  {c['run']} | {c['step']} | {c['weights']} | {c['val_fd4']} | {c['val_fd8']} | {c['out_std']}")
    print(f"validation reference (first seed): {val_base}")
    for d in diags:
        print(f"\ndiagnostics {d['run']}: D loss at the end of the warm-up {d['warmup_end_d']}; "
              f"first quarter {d['first_quarter']}; last quarter {d['last_quarter']}; real std {d['real_std']}")
    fd = {(r["model"], r["sampler"], r["steps"]): r["fd_classifier_seeds"] for r in rows}
    e8, e50 = fd[("base", "euler", 8)], fd[("base", "euler", 50)]
    verdict = {"arc8_below_euler8": all(a < b for a, b in zip(fd[("arc", "pingpong", 8)], e8)),
               "arc4_at_or_below_euler50": all(a <= b for a, b in zip(fd[("arc", "pingpong", 4)], e50)),
               "arc8_at_or_below_euler50": all(a <= b for a, b in zip(fd[("arc", "pingpong", 8)], e50))}
    total = round(time.perf_counter() - clock, 1)
    stages = {k: round(v) for k, v in times.items()}
    print(f"\nchosen on validation: {choice}")
    print(f"verdict (both seeds, held-out): {verdict}")
    print(f"stage ends (s from start): {stages}")
    print(f"real held-out latents: classifier accuracy {real_acc:.3f}; latent scale {judge_scale(work):.3f}; "
          f"total {total:.0f} s; {cpu}; jobs {args.jobs}")
    print(json.dumps({"rows": rows, "chosen": choice, "checkpoints": checkpoints, "val_base": val_base,
                      "diagnostics": diags, "verdict": verdict, "classifier_real_accuracy": real_acc,
                      "latent_scale": judge_scale(work), "cpu": cpu, "jobs": args.jobs, "stage_ends_sec": stages,
                      "total_sec": total}))


def judge_scale(work: Path) -> float:
    return float(load_base_cached(work)[1])


if __name__ == "__main__":
    main()
