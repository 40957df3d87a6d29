"""Judging one set of audio: accuracy (adherence) against its labels, FD to a real reference set, and optionally the
paired difference to a second set made from the same prompts; what `edgegen judge eval` prints and writes.

    report = evaluate(judge=load_judge(path), audio=find_set(gen), reference=None, paired=None)
    print(report.table())                           # readable: chance levels, A_real, the real-vs-real FD floor
    json.dumps(report.to_json())                    # the same figures

`reference=None` takes the judge's own held-out split (judge.json "reference"). The real-vs-real floor the judge
measured when it was trained, FD(validation, held_out), is shown beside an FD to that same held-out set; against
another reference it does not apply and is left out. With `paired` (a set whose row i came from the prompt of the
audio's row i, e.g. another model or step count), the report adds adherence(audio) - adherence(paired) per head
and FD(audio) - FD(paired), with 95% intervals that resample the shared prompts (scores.fd_paired); when only one
of the two sets is labelled, the other takes its labels (the prompts are the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgegen.errors import EdgegenError
from edgegen.judge.data import AudioSet, find_set
from edgegen.judge.model import HEADS, Judge
from edgegen.judge.scores import (JOINT, Interval, accuracy_paired, bootstrap_accuracy, chance, correct, fd_interval,
                                  fd_paired)


@dataclass
class Judged:
    """One set through the judge: embeddings [n, E] and, when labelled, which clips each head got right."""
    audio: AudioSet
    emb: np.ndarray
    right: dict[str, np.ndarray] | None
    chance: dict | None


def judge_set(judge: Judge, audio: AudioSet) -> Judged:
    truth = judge.encode(list(audio.labels), where=str(audio.source)) if audio.labelled else None  # checked first
    pred, emb = judge.run(audio.clips(sample_rate=judge.net.cfg.sample_rate))
    if len(emb) < 2:
        raise EdgegenError(f"{audio.source}: {len(emb)} clip; a Frechet distance needs a set of at least 2")
    return Judged(audio, emb, correct(pred, truth) if truth else None, chance(truth, judge.vocab) if truth else None)


@dataclass
class JudgeReport:
    judge: str
    audio: dict                                   # {"source", "clips", "labelled"}
    accuracy: dict[str, Interval] | None          # head / "joint" -> accuracy with its 95% interval
    chance: dict | None                           # head / "joint" -> {"majority", "uniform"}
    a_real: dict | None                           # head / "joint" -> the judge's accuracy on held-out real audio
    fd: Interval | None
    reference: dict | None                        # {"source", "clips"}
    floor: dict | None                            # judge.json's real.fd_floor, where the reference is its held_out
    paired: dict = field(default_factory=dict)    # {"source", "accuracy": {head: Interval}, "fd": Interval}

    def to_json(self) -> dict:
        def ivs(d):
            return None if d is None else {k: v.to_json() for k, v in d.items()}

        fd = None if self.fd is None else {**self.fd.to_json(), "reference": self.reference["source"],
                                           "reference_clips": self.reference["clips"]}
        paired = self.paired and {"source": self.paired["source"], "accuracy": ivs(self.paired["accuracy"]),
                                  "fd": self.paired["fd"].to_json() if self.paired["fd"] else None}
        return {"judge": self.judge, "audio": self.audio, "accuracy": ivs(self.accuracy), "chance": self.chance,
                "a_real": self.a_real, "fd": fd, "fd_floor": self.floor, "paired": paired}

    def table(self) -> str:
        lines = [f"judge  {self.judge}",
                 f"audio  {self.audio['source']}: {self.audio['clips']} clips"
                 + ("" if self.audio["labelled"] else " (unlabelled: no accuracy)")]
        if self.accuracy:
            lines += ["", f"{'':<11} {'accuracy [95% CI]':<20} {'chance: majority':>16} {'uniform':>8} "
                          f"{'A_real':>7}"]
            for k in (*HEADS, JOINT):
                real = f"{self.a_real[k]:.3f}" if self.a_real else "-"
                acc = self.accuracy[k]
                lines.append(f"{k:<11} {acc.value:.3f} [{acc.lo:.3f}, {acc.hi:.3f}]  "
                             f"{self.chance[k]['majority']:>16.3f} {self.chance[k]['uniform']:>8.3f} {real:>7}")
            lines.append("(accuracy against the labels the prompts asked for: adherence on generated audio; "
                         "A_real: the judge on held-out real clips)")
        lines.append("")
        if self.fd is None:
            lines.append("FD     no reference set (give --reference)")
        else:
            lines.append(f"FD     {self.fd} to {self.reference['source']} ({self.reference['clips']} clips)")
            if self.floor:
                f = self.floor
                lines.append(f"floor  {f['value']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}] real vs real: FD("
                             f"{', '.join(f['sets'])}), measured when the judge was trained")
            lines.append("       (embedding FD, 95% bootstrap CI over clips, bias-shifted; compare sets of similar "
                         "size)")
        if self.paired:
            p = self.paired
            lines += ["", f"paired against {p['source']} (same prompts, row for row): this set minus that one"]
            for k, iv in (p["accuracy"] or {}).items():
                lines.append(f"  accuracy {k:<11} {iv.value:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]")
            if p["fd"] is not None:
                lines.append(f"  FD                   {p['fd'].value:+.2f} [{p['fd'].lo:+.2f}, {p['fd'].hi:+.2f}]")
        return "\n".join(lines)


def _intervals(right: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, Interval]:
    return {k: bootstrap_accuracy(v, n_boot=n_boot, seed=seed) for k, v in right.items()}


def default_reference(judge: Judge) -> AudioSet | None:
    ref = judge.meta.get("reference")
    return find_set(Path(ref), option="the judge's reference") if ref and Path(ref).is_dir() else None


def evaluate(*, judge: Judge, audio: AudioSet, reference: AudioSet | None = None, paired: AudioSet | None = None,
             judge_path: str = "", n_boot: int = 1000, seed: int = 0) -> JudgeReport:
    """Score `audio` (see the module docstring); every input is checked before the first clip is judged."""
    own = default_reference(judge)
    reference = reference or own
    if paired is not None and audio.labelled != paired.labelled:  # row i of both came from one prompt: one label
        audio, paired = (audio, replace(paired, labels=audio.labels)) if audio.labelled \
            else (replace(audio, labels=paired.labels), paired)
    if paired is not None:
        if len(paired) != len(audio):
            raise EdgegenError(f"--paired {paired.source} has {len(paired)} clips, --audio {audio.source} "
                               f"{len(audio)}: a paired set has one clip per prompt of the other, row for row")
        if audio.labelled and paired.labelled and paired.labels != audio.labels:
            row = next(i for i, (a, b) in enumerate(zip(audio.labels, paired.labels)) if a != b)
            raise EdgegenError(f"--paired {paired.source}: row {row + 1} asks for {paired.labels[row]!r} where "
                               f"--audio asks for {audio.labels[row]!r}; pair sets made from the same prompts")
    a = judge_set(judge, audio)
    ref = judge_set(judge, reference) if reference is not None else None
    held_out = (judge.meta.get("real") or {}).get("held_out")
    is_own = ref is not None and own is not None and reference.source.resolve() == own.source.resolve()
    report = JudgeReport(
        judge=judge_path, audio={"source": str(audio.source), "clips": len(audio), "labelled": audio.labelled},
        accuracy=_intervals(a.right, n_boot, seed) if a.right else None, chance=a.chance,
        a_real={k: v["value"] for k, v in held_out["accuracy"].items()} if held_out else None,
        fd=fd_interval(a.emb, ref.emb, n_boot=n_boot, seed=seed) if ref else None,
        reference={"source": str(reference.source), "clips": len(reference)} if ref else None,
        floor=(judge.meta.get("real") or {}).get("fd_floor") if is_own else None)
    if paired is not None:
        b = judge_set(judge, paired)
        acc = {k: accuracy_paired(a.right[k], b.right[k], n_boot=n_boot, seed=seed) for k in a.right} \
            if a.right and b.right else None
        fd = fd_paired(a.emb, b.emb, ref.emb, n_boot=n_boot, seed=seed) if ref else None
        report.paired = {"source": str(paired.source), "accuracy": acc, "fd": fd}
    return report


def run_eval(*, judge: Path, audio: Path, reference: Path | None = None, paired: Path | None = None,
             json_path: Path | None = None, n_boot: int = 1000, seed: int = 0) -> JudgeReport:
    """`edgegen judge eval`: every path checked (and the JSON report's place probed) before any clip is judged;
    the JSON is written whole or not at all."""
    import json

    from edgegen.audio_io import check_output
    from edgegen.common import write_text_atomic
    from edgegen.judge.model import load_judge

    sets = {"--audio": find_set(audio, option="--audio"),
            "--reference": find_set(reference, option="--reference") if reference is not None else None,
            "--paired": find_set(paired, option="--paired") if paired is not None else None}
    if json_path is not None:
        check_output(json_path, inputs={"--judge": judge, "--audio": audio, "--reference": reference,
                                        "--paired": paired})
    loaded = load_judge(judge)
    if sets["--reference"] is None and default_reference(loaded) is None:
        raise EdgegenError(f"--judge {judge} names no held-out reference that exists here "
                           f"({loaded.meta.get('reference')}); give --reference, a folder of real clips")
    report = evaluate(judge=loaded, audio=sets["--audio"], reference=sets["--reference"], paired=sets["--paired"],
                      judge_path=str(judge), n_boot=n_boot, seed=seed)
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(report.to_json(), indent=1) + "\n")
    return report
