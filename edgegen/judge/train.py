"""Training the judge on a rendered corpus, and measuring it on the corpus's real held-out audio.

    path = train_judge(corpus=Path("~/.cache/edgegen/corpus/seed-0"), out=Path("~/.cache/edgegen/judges/seed-0"),
                       cfg=JudgeConfig(), log=print)            # -> out (judge.safetensors, judge.json, log.jsonl)

The corpus folder holds train/ (required; every clip labelled family/kind/tempo_band) and, optionally,
validation/ and held_out/ (edgegen.corpus's splits). Every training clip becomes a log-mel image once; each step
draws `batch_size` random crops of `crop` frames (a clip shorter than that is padded with the -100 dB floor), moves
each crop's level by a uniform +-gain_db and minimises the mean over the three heads of their cross-entropy
(AdamW, cosine decay). The vocabularies are the label values seen in train/, sorted.

After the last step (no checkpoint is chosen: the held-out numbers are not selected on) the judge scores whole
clips: accuracy per head and joint on validation/ and held_out/ with chance levels and bootstrap intervals (A_real:
held_out's), and the real-vs-real floor of the Frechet distance, FD(validation, held_out) with its interval. These
go into judge.json ("real"), with held_out/ as the reference set `edgegen judge eval` defaults to.

The folder is written whole under a temporary name beside `out` and renamed at the end: an interrupted or failed
run leaves nothing at `out`. An existing `out` is refused (the run is minutes; train again into a new folder).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgegen.audio_io import check_writable
from edgegen.common import atomic_path
from edgegen.errors import EdgegenError
from edgegen.judge.data import AudioSet, find_set
from edgegen.judge.model import (FLOOR_DB, HEADS, Judge, JudgeConfig, JudgeNet, encode_labels, log_mel,
                                  mel_filters, save_judge, split_label)
from edgegen.judge.scores import bootstrap_accuracy, chance, correct, fd_interval
from edgegen.train.loop import clock_time, new_folder

N_BOOT = 1000


def read_mels(s: AudioSet, cfg: JudgeConfig) -> list[torch.Tensor]:
    """Every clip of `s` as log-mel dB [M, T_i]."""
    fb = mel_filters(cfg)
    return [log_mel(torch.from_numpy(a), cfg, filters=fb) for a in s.clips(sample_rate=cfg.sample_rate)]


def crops(mels: list[torch.Tensor], idx: list[int], cfg: JudgeConfig, g: torch.Generator) -> torch.Tensor:
    """[B, M, crop] dB: for each index a crop at a uniform offset, level moved by a uniform +-gain_db."""
    out = torch.full((len(idx), cfg.n_mels, cfg.crop), FLOOR_DB)
    gains = (torch.rand(len(idx), generator=g) * 2 - 1) * cfg.gain_db
    for b, i in enumerate(idx):
        m = mels[i]
        start = int(torch.randint(max(1, m.shape[1] - cfg.crop + 1), (1,), generator=g))
        piece = m[:, start:start + cfg.crop]
        out[b, :, :piece.shape[1]] = piece + gains[b]
    return out


def score_split(judge: Judge, mels: list[torch.Tensor], truth: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """({"clips", "accuracy": {head: Interval json}, "chance"}, embeddings [n, E]) of a labelled split."""
    pred, emb = judge.run_mels(mels)
    right = correct(pred, truth)
    acc = {k: bootstrap_accuracy(v, n_boot=N_BOOT).to_json() for k, v in right.items()}
    return {"clips": len(mels), "accuracy": acc, "chance": chance(truth, judge.vocab)}, emb


def _labelled(s: AudioSet) -> AudioSet:
    if not s.labelled:
        first = next(p for p, lab in zip(s.paths, s.labels) if lab is None)
        raise EdgegenError(f"{s.source}: {first.name} has no label; the judge trains and is measured on clips "
                           "labelled family/kind/tempo_band (an edgegen corpus split)")
    return s


def train_judge(*, corpus: Path, out: Path, cfg: JudgeConfig = JudgeConfig(),
                log: Callable[[str], None] | None = None, log_every: int = 50) -> Path:
    """Train a judge on corpus/train and measure it on corpus/validation and corpus/held_out; returns `out`."""
    log = log or (lambda line: None)
    cfg.check()
    corpus, out = Path(corpus).expanduser(), Path(out).expanduser()
    if out.exists():
        raise EdgegenError(f"-o {out} already exists; give a new folder for the judge (or remove that one)")
    if out.parent.is_dir():
        check_writable(out)  # a folder that takes no new files fails now, not after minutes of training
    if not corpus.is_dir():
        raise EdgegenError(f"--corpus {corpus} is not a folder; give a corpus folder holding train/ "
                           "(e.g. ~/.cache/edgegen/corpus/seed-0 from `edgegen corpus render`)")
    if not (corpus / "train").is_dir():
        raise EdgegenError(f"--corpus {corpus} has no train/ folder; give a corpus folder holding train/ "
                           "(and validation/, held_out/), e.g. ~/.cache/edgegen/corpus/seed-0")
    splits = {name: _labelled(find_set(corpus / name, option="--corpus"))
              for name in ("train", "validation", "held_out") if (corpus / name).is_dir()}
    train = splits["train"]
    labels = [split_label(lab, where=f"{train.source} (row {i + 1})") for i, lab in enumerate(train.labels)]
    vocab = {h: sorted({lab[i] for lab in labels}) for i, h in enumerate(HEADS)}
    truth = {name: encode_labels(list(s.labels), vocab, where=str(s.source)) for name, s in splits.items()}
    clock = time.perf_counter()
    mels = {}
    for name, s in splits.items():
        mels[name] = read_mels(s, cfg)
        log(f"read {name}: {len(s)} clips ({clock_time(time.perf_counter() - clock)})")
    read_seconds = time.perf_counter() - clock

    with torch.random.fork_rng():  # the init and dropout are functions of the seed; the global RNG is untouched
        torch.manual_seed(cfg.seed)
        net = JudgeNet(cfg, vocab)
        frames = torch.cat(mels["train"], dim=1)                        # (M, all frames)
        net.band_mean.copy_(frames.mean(1, keepdim=True))
        net.band_std.copy_(frames.std(1, keepdim=True).clamp(min=1e-3))
        del frames
        y = {h: torch.from_numpy(v) for h, v in truth["train"].items()}
        records = fit(net, mels["train"], y, cfg, log=log, log_every=log_every)
    train_seconds = time.perf_counter() - clock - read_seconds

    judge = Judge(net.eval(), {})
    real, emb = {}, {}
    for name in ("validation", "held_out"):
        if name in splits:
            real[name], emb[name] = score_split(judge, mels[name], truth[name])
    if len(emb) == 2:
        real["fd_floor"] = {"sets": ["validation", "held_out"], "n_boot": N_BOOT,
                            **fd_interval(emb["validation"], emb["held_out"], n_boot=N_BOOT).to_json()}
    meta = {"trained_on": {"corpus": str(corpus.resolve()), "clips": len(train), "steps": cfg.steps,
                           "read_seconds": round(read_seconds, 1), "train_seconds": round(train_seconds, 1),
                           "total_seconds": round(time.perf_counter() - clock, 1),
                           "torch_threads": torch.get_num_threads()},
            "reference": str((corpus / "held_out").resolve()) if "held_out" in splits else None,
            "real": real}
    write_folder(out, net, meta=meta, records=records)
    log(f"wrote {out} ({clock_time(time.perf_counter() - clock)} in all)")
    return out


def fit(net: JudgeNet, mels: list[torch.Tensor], y: dict[str, torch.Tensor], cfg: JudgeConfig, *,
        log: Callable[[str], None], log_every: int = 50) -> list[dict]:
    """Train `net` in place for cfg.steps steps; returns the log records (one per `log_every` steps)."""
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = min(50, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: (k + 1) / (warmup + 1) if k < warmup
        else 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, cfg.steps - warmup))))
    g = torch.Generator().manual_seed(cfg.seed)
    sums, records, clock = {}, [], time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(len(mels), (cfg.batch_size,), generator=g).tolist()
        logits, _ = net(crops(mels, idx, cfg, g))
        losses = {h: F.cross_entropy(logits[h], y[h][idx]) for h in HEADS}
        loss = sum(losses.values()) / len(HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if not math.isfinite(float(loss.detach())):
            raise EdgegenError(f"judge training diverged at step {step + 1} (loss {float(loss.detach())}); lower the "
                               "learning rate")
        numbers = {"loss": float(loss.detach()), **{f"acc_{h}": float((logits[h].argmax(1) == y[h][idx]).float().mean())
                                           for h in HEADS}}
        for k, v in numbers.items():
            sums[k] = sums.get(k, 0.0) + v
        done = step + 1
        if done % log_every == 0 or done == cfg.steps:
            n = (done - 1) % log_every + 1
            sec = time.perf_counter() - clock
            records.append({"step": done, **{k: round(v / n, 4) for k, v in sums.items()}, "sec": round(sec, 1)})
            sums.clear()
            eta = clock_time(sec / done * (cfg.steps - done))
            log("  ".join(f"{k} {v}" for k, v in records[-1].items()) + f"  progress {done}/{cfg.steps}  eta {eta}")
    net.eval()
    return records


def write_folder(out: Path, net: JudgeNet, *, meta: dict, records: list[dict]) -> None:
    """judge.safetensors, judge.json and log.jsonl into a temporary folder beside `out`, renamed onto `out`."""
    with new_folder(out.parent), atomic_path(out) as tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of an earlier run that had this process id
        tmp.mkdir()
        save_judge(tmp, net, meta=meta)
        (tmp / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def describe(judge_dir: Path) -> str:
    """What the judge's judge.json says it scored on real audio: A_real per head with chance, and the FD floor."""
    meta, lines = json.loads((Path(judge_dir) / "judge.json").read_text()), []
    for name in ("held_out", "validation"):
        if split := meta.get("real", {}).get(name):
            acc, ch = split["accuracy"], split["chance"]
            lines.append(f"{name} ({split['clips']} real clips) accuracy: " + ", ".join(
                f"{k} {acc[k]['value']:.3f} (chance {ch[k]['majority']:.3f})" for k in acc))
    if floor := meta.get("real", {}).get("fd_floor"):
        lines.append(f"FD floor ({' vs '.join(floor['sets'])}): {floor['value']:.2f} "
                     f"[95% CI {floor['lo']:.2f}, {floor['hi']:.2f}]")
    return "\n".join(lines)
