"""How much of the judge's A_real survives a VAE: the corpus judge on a split's reconstructions (issue 33, part 4).

    .venv/bin/python -m benchmarks.quality.vae_recon --run ~/.cache/edgegen/runs/vae-c16 \
        --judge ~/.cache/edgegen/judges/seed-0 --corpus ~/.cache/edgegen/corpus/seed-0 --split held_out \
        --out /tmp/recon --json benchmarks/runs/DATE-vae/recon.json

Reads the training state an `edgegen train vae` run saved (`--run`, at whatever step it is: the run may still be
training), encodes every clip of `--split` to its latent mean, decodes it, and writes the reconstructions with the
split's labels to `--out` (a captions.jsonl the judge reads). Then: the judge's accuracy on them against A_real
(issue 33 asks for at least 0.9 x A_real), their FD to the judge's real reference, and the MR-STFT distance and
SI-SDR of each clip against its reconstruction.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch


def load_vae(run: Path):
    """(Autoencoder in eval mode, VAEConfig, step) from the state a `train vae` run saved."""
    from edgegen.train import loop
    from edgegen.train.vae import Autoencoder, VAEConfig

    state = loop.load_state(run)
    if state is None or state["kind"] != "vae":
        raise SystemExit(f"{run}: no saved `train vae` state there")
    fields = {f.name for f in dataclasses.fields(VAEConfig)}
    cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items() if k in fields})
    ae = Autoencoder(cfg.oobleck())
    ae.load_state_dict(state["vae"])
    return ae.eval(), cfg, state["step"]


@torch.no_grad()
def reconstruct(ae, cfg, audio: np.ndarray) -> np.ndarray:
    """[2, n] -> [2, n]: the latent mean decoded (no sampling), the clip padded to whole latent frames and cut back."""
    n = audio.shape[1]
    pad = -n % cfg.hop
    x = torch.from_numpy(np.pad(audio, ((0, 0), (0, pad))))[None]
    mean, _ = ae.encoder(x).chunk(2, dim=1)
    return ae.decoder(mean)[0, :, :n].numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--judge", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--split", default="held_out")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import soundfile as sf

    from edgegen.bench import describe_cpu, host_machine
    from edgegen.judge.data import find_set
    from edgegen.judge.model import load_judge
    from edgegen.judge.report import evaluate
    from edgegen.judge.scores import reconstruction
    from edgegen.train.data import read_captions, read_clip

    start = time.perf_counter()
    ae, cfg, step = load_vae(args.run.expanduser())
    captions = args.corpus.expanduser() / args.split / "captions.jsonl"
    records = read_captions(captions)
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    clips, recons = [], []
    with open(args.out / "captions.jsonl", "w") as f:
        for i, r in enumerate(records):
            audio, why = read_clip(captions.parent / r.path, sample_rate=44100)
            if audio is None:
                raise SystemExit(f"{r.path}: {why}")
            rec = reconstruct(ae, cfg, audio)
            name = f"clips/{i:05d}.wav"
            sf.write(args.out / name, rec.T, 44100, subtype="FLOAT")
            f.write(json.dumps({"path": name, "caption": r.caption, "label": r.label}) + "\n")
            clips.append(audio)
            recons.append(rec)
    signal = reconstruction(clips, recons)
    report = evaluate(judge=load_judge(args.judge.expanduser()), audio=find_set(args.out),
                      judge_path=str(args.judge))
    machine = host_machine()
    print(f"{describe_cpu(machine)}; VAE {args.run} at step {step} (channels {cfg.channels}); "
          f"{len(records)} {args.split} clips; {time.perf_counter() - start:.0f} s")
    print(f"MR-STFT distance {signal['mrstft']:.3f}, SI-SDR {signal['si_sdr_db']:.2f} dB (means over clips)")
    print(report.table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run": str(args.run), "step": step, "channels": cfg.channels,
                                         "split": args.split, "clips": len(records), "machine": machine,
                                         "reconstruction": signal, "judge": report.to_json()}, indent=1))


if __name__ == "__main__":
    main()
