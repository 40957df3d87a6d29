"""`edgegen corpus render|verify` (edgegen.corpus): the captioned corpus rendered from real instrument samples."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from edgegen.cli import main
from edgegen.errors import EdgegenError


def _counts(clips_per_kind: int | None) -> dict | None:
    from edgegen.corpus import DEFAULT_COUNTS

    return None if clips_per_kind is None else {k: clips_per_kind for k in DEFAULT_COUNTS}


_seed = click.option("--seed", type=int, default=0, show_default=True, help="Everything is deterministic from it.")
_out = click.option("--output", "-o", "--out", "out", type=click.Path(path_type=Path), default=None,
                    help="State folder (default ~/.cache/edgegen/corpus/seed-N).")
_clip = click.option("--clip-seconds", type=float, default=None,
                     help="Clip length, rounded to 2048-sample frames (default 262144 samples = 5.94 s).")
_per_kind = click.option("--clips-per-kind", type=click.IntRange(min=1), default=None,
                         help="Override the default count of every material kind (a quick, small corpus).")
_sf = click.option("--soundfont", type=click.Path(path_type=Path), default=None,
                   help="SoundFont (default /usr/share/sounds/sf2/FluidR3_GM.sf2, Debian fluid-soundfont-gm).")


@main.group()
def corpus():
    """Render a captioned corpus from real instrument samples (fluidsynth + FluidR3 GM, music21's scores).

    \b
    edgegen corpus render                 # ~1,400 clips, 2.3 h, to ~/.cache/edgegen/corpus/seed-0 (resumable)
    edgegen corpus verify --sample 40     # re-render a sample in a fresh folder, compare with the checksum list
    """


@corpus.command()
@_seed
@_out
@_clip
@_per_kind
@_sf
@click.option("--verify", is_flag=True, help="Then compare every file with the committed checksum list.")
def render(seed, out, clip_seconds, clips_per_kind, soundfont, verify):
    """Render (or resume) the corpus; write captions.jsonl per split and SHA256SUMS."""
    from edgegen.corpus import DEFAULT_CLIP_SAMPLES, clip_samples_for, render_corpus, verify_corpus

    samples = DEFAULT_CLIP_SAMPLES if clip_seconds is None else clip_samples_for(clip_seconds)
    t0 = time.monotonic()
    try:
        root = render_corpus(out, seed=seed, counts=_counts(clips_per_kind), clip_samples=samples, soundfont=soundfont)
    except KeyboardInterrupt:  # every finished clip is kept (written whole, then renamed): say how to go on
        click.echo("edgegen: error: interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    s = json.loads((root / "summary.json").read_text())
    click.echo(f"{root}: {s['clips']} clips, {s['hours']:.2f} h "
               f"({', '.join(k + ' ' + str(v['clips']) for k, v in s['per_split'].items())}), "
               f"{time.monotonic() - t0:.0f} s")
    if verify:
        bad = verify_corpus(root, seed=seed, counts=_counts(clips_per_kind), clip_samples=samples)
        if bad:
            raise EdgegenError(f"{len(bad)} file(s) differ from the committed checksum list, first: {bad[0]}")
        click.echo("verified: every file matches the committed checksum list")


@corpus.command()
@_seed
@_clip
@_per_kind
@_sf
@click.option("--sample", type=click.IntRange(min=1), default=40, show_default=True,
              help="Clips to re-render (spread over the plan).")
@click.option("--against", type=click.Path(path_type=Path), default=None,
              help="Checksum list (default: the committed one for seed 0).")
@click.option("--output", "-o", "--out", "out", type=click.Path(path_type=Path), default=None,
              help="Keep the re-rendered clips here.")
def verify(seed, clip_seconds, clips_per_kind, soundfont, sample, against, out):
    """Re-render a sample of clips in a fresh folder and compare their checksums."""
    from edgegen.corpus import DEFAULT_CLIP_SAMPLES, clip_samples_for, verify_sample

    samples = DEFAULT_CLIP_SAMPLES if clip_seconds is None else clip_samples_for(clip_seconds)
    names, bad = verify_sample(seed=seed, sample=sample, against=against, counts=_counts(clips_per_kind),
                               clip_samples=samples, soundfont=soundfont, out=out)
    if bad:
        raise EdgegenError(f"{len(bad)} of {len(names)} re-made file(s) differ from the checksum list, first: {bad[0]}")
    clips = sum(n.endswith(".wav") for n in names)
    click.echo(f"verified: {clips} re-rendered clips and {len(names) - clips} re-written tables / config match the "
               "checksum list byte for byte")
