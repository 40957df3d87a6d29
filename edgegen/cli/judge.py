"""`edgegen judge train|eval` (edgegen.judge): the corpus-trained classifier that judges generated audio."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgegen.cli import err, main
from edgegen.cli.train import _COUNT, _SEED

_set_help = ("a captions file (.jsonl / .csv: path, caption, label family/kind/tempo_band), a folder holding "
             "captions.jsonl (a corpus split), or a folder of .wav / .flac / .ogg files (unlabelled: FD only)")


@main.group()
def judge():
    """Judge audio with a small log-mel classifier trained on the rendered corpus: accuracy / adherence per label
    (family, kind, tempo band) and the Frechet distance on its embedding to real held-out audio.

    \b
    edgegen judge train --corpus ~/.cache/edgegen/corpus/seed-0 -o ~/.cache/edgegen/judges/seed-0   # ~6 min
    edgegen judge eval --judge ~/.cache/edgegen/judges/seed-0 --audio gen/captions.jsonl --json gen/judge.json
    """


@judge.command("train")
@click.option("--corpus", required=True, type=click.Path(path_type=Path),
              help="Corpus folder with train/ (and validation/, held_out/ to measure on): `edgegen corpus render`.")
@click.option("--output", "-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="New folder for the judge: judge.safetensors, judge.json, log.jsonl (written whole, then renamed).")
@click.option("--steps", type=_COUNT, default=1200, show_default=True, help="Training steps (32 crops each).")
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Seeds initialisation and batches.")
def judge_train_cmd(corpus, out, steps, seed):
    """Train the judge on the corpus's training split; measure it on validation/ and held_out/."""
    from edgegen.judge.model import JudgeConfig
    from edgegen.judge.train import describe, train_judge

    try:
        path = train_judge(corpus=corpus, out=out, cfg=JudgeConfig(steps=steps, seed=seed), log=err)
    except KeyboardInterrupt:  # the judge is written whole at the end, so there is nothing to resume or clean up
        err(f"edgegen: error: interrupted; nothing was written to {out}")
        sys.exit(130)
    click.echo(describe(path))
    click.echo(f"judge: {path}")


@judge.command("eval")
@click.option("--judge", "judge_path", required=True, type=click.Path(path_type=Path),
              help="Folder from `edgegen judge train`.")
@click.option("--audio", required=True, type=click.Path(path_type=Path), help=f"The set to judge: {_set_help}.")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Real audio to measure FD against (default: the judge's held-out split).")
@click.option("--paired", type=click.Path(path_type=Path), default=None,
              help="A second set made from the same prompts, row for row: adds the paired differences.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON (checked before any work, written atomically).")
@click.option("--bootstrap", type=_COUNT, default=1000, show_default=True, help="Resamples per 95% interval.")
@click.option("--seed", type=_SEED, default=0, show_default=True, help="Seed of the bootstrap.")
def judge_eval_cmd(judge_path, audio, reference, paired, json_path, bootstrap, seed):
    """Accuracy (adherence) per label with chance levels, and FD to real audio with its floor and 95% intervals."""
    from edgegen.judge.report import run_eval

    report = run_eval(judge=judge_path, audio=audio, reference=reference, paired=paired, json_path=json_path,
                      n_boot=bootstrap, seed=seed)
    click.echo(report.table())
