"""The project's own judges of generated audio (issue 33, part 4): no pretrained audio model (CLAP, VGGish, PANNs)
is available, so a small classifier trained on the rendered corpus stands in for one.

    from edgegen.judge import find_set, load_judge, train_judge, evaluate
    train_judge(corpus=Path("~/.cache/edgegen/corpus/seed-0"), out=Path("~/.cache/edgegen/judges/seed-0"))
    judge = load_judge(Path("~/.cache/edgegen/judges/seed-0"))
    pred, emb = judge.run(clips)                     # whole clips [C, N] -> {head: class index [n]}, emb [n, 64]
    report = evaluate(judge=judge, audio=find_set(Path("gen/captions.jsonl")), reference=None)
    print(report.table())                            # accuracy / adherence with chance, FD with floor and CIs

    model.py    JudgeConfig, log_mel, JudgeNet (log-mel CNN, heads family / kind / tempo_band), save / load
    data.py     AudioSet, find_set: a captions file, a corpus split, or a folder of audio files
    train.py    train_judge: train on corpus/train, measure A_real and the FD floor on validation / held_out
    scores.py   accuracy, chance, bootstrap intervals, frechet, fd_interval, fd_paired, accuracy_paired,
                reconstruction (mrstft + SI-SDR of a VAE's output against its input)
    report.py   evaluate -> JudgeReport (table + JSON): what `edgegen judge eval` prints

Why three heads, not the joint label: the corpus's label family/kind/tempo_band has 92 values over 1132 training
clips (several with 1-3 clips) and 51 over the 114 held-out ones (~2 clips each), so a joint classifier would be
trained and measured on too few clips per class to mean anything. Each factor has 4-11 classes with >= 58
training clips each, a prompt names all three, and a generated clip can get one right and another wrong; the joint
figure (every head right) is still reported, against its own chance level.
"""

from edgegen.judge.data import AudioSet, find_set
from edgegen.judge.model import HEADS, Judge, JudgeConfig, JudgeNet, load_judge, log_mel
from edgegen.judge.report import JudgeReport, evaluate
from edgegen.judge.scores import (Interval, accuracy, accuracy_paired, chance, fd_interval, fd_paired, frechet,
                                  reconstruction)
from edgegen.judge.train import train_judge

__all__ = ["AudioSet", "find_set", "HEADS", "Judge", "JudgeConfig", "JudgeNet", "load_judge", "log_mel",
           "JudgeReport", "evaluate", "Interval", "accuracy", "accuracy_paired", "chance", "fd_interval", "fd_paired",
           "frechet", "reconstruction", "train_judge"]
