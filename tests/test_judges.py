"""edgegen.judge: a tiny judge trained on sines vs noise separates them; FD, its bootstrap intervals and the paired
difference behave as their definitions say; SI-SDR; `edgegen judge` on bad input is one error line, exit 2."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from edgegen.cli import main
from edgegen.judge import JudgeConfig, find_set, load_judge, train_judge
from edgegen.judge.scores import chance, fd_interval, fd_paired, frechet, reconstruction
from edgegen.metrics import si_sdr_db
from tests.test_bad_input_train import assert_one_error
from tests.test_train import one_thread  # noqa: F401  (autouse, module scope: tiny models run fastest on one thread)

SR = 44100
TINY = JudgeConfig(n_mels=16, channels=(4, 8), crop=16, batch_size=8, steps=40, lr=1e-2, gain_db=0.0)
LABELS = ("tone/sine/slow", "noise/hiss/fast")


def _clip(label: str, rng: np.random.Generator) -> np.ndarray:
    """0.5 s stereo: a sine of random pitch, or white noise, at a random level."""
    t = np.arange(SR // 2) / SR
    x = np.sin(2 * np.pi * rng.uniform(200, 2000) * t) if label == LABELS[0] else rng.standard_normal(len(t))
    return (rng.uniform(0.1, 0.4) * np.stack([x, x])).astype(np.float32)


def write_split(folder: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "clips").mkdir(parents=True)
    rows = []
    for i in range(n):
        label = LABELS[i % 2]
        sf.write(str(folder / "clips" / f"{i:03d}.wav"), _clip(label, rng).T, SR, subtype="PCM_16")
        rows.append(json.dumps({"path": f"clips/{i:03d}.wav", "caption": label, "label": label}))
    (folder / "captions.jsonl").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("judge_corpus")
    for name, n, seed in (("train", 24, 0), ("validation", 10, 1), ("held_out", 10, 2)):
        write_split(root / name, n, seed)
    return root


@pytest.fixture(scope="module")
def judge_dir(corpus, tmp_path_factory) -> Path:
    lines = []
    out = train_judge(corpus=corpus, out=tmp_path_factory.mktemp("judges") / "tiny", cfg=TINY, log=lines.append,
                      log_every=10)
    assert any("eta" in line for line in lines) and lines[-1].startswith("wrote ")
    return out


def test_tiny_judge_learns_sine_vs_noise(judge_dir, corpus):
    meta = json.loads((judge_dir / "judge.json").read_text())
    held_out = meta["real"]["held_out"]
    assert {k: v["value"] for k, v in held_out["accuracy"].items()} == {"family": 1.0, "kind": 1.0,
                                                                         "tempo_band": 1.0, "joint": 1.0}
    assert held_out["chance"]["family"] == {"majority": 0.5, "uniform": 0.5}
    assert meta["vocab"] == {"family": ["noise", "tone"], "kind": ["hiss", "sine"], "tempo_band": ["fast", "slow"]}
    records = [json.loads(line) for line in (judge_dir / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == TINY.steps and records[-1]["loss"] < records[0]["loss"]
    # the saved judge predicts what the trained one did, on clips it reads itself
    judge = load_judge(judge_dir)
    s = find_set(corpus / "held_out")
    pred, emb = judge.run(s.clips(sample_rate=SR))
    assert (pred["family"] == judge.encode(list(s.labels))["family"]).all() and emb.shape == (10, 8)
    # a clip shorter than the blocks' pooling needs (4 frames here) is padded, not a crash
    assert judge.run([np.zeros((2, 1000), np.float32), np.ones((1, 5), np.float32)])[1].shape == (2, 8)
    assert not [p for p in judge_dir.parent.iterdir() if ".partial" in p.name]


def test_untrained_judge_does_not_separate(corpus, tmp_path):
    """The accuracy above comes from training: the same net after 1 step of a tiny learning rate is near chance."""
    out = train_judge(corpus=corpus, out=tmp_path / "j", cfg=replace(TINY, steps=1, lr=1e-6))
    acc = json.loads((out / "judge.json").read_text())["real"]["held_out"]["accuracy"]
    assert acc["joint"]["value"] <= 0.5


def test_frechet_matches_gaussians_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 4))
    assert frechet(a, a) == pytest.approx(0, abs=1e-9)
    # N(0, I) vs N(mu, 4 I) in 4 dimensions: |mu|^2 + 4 (1 + 4 - 2 * 2) = |mu|^2 + 4
    b = 2 * rng.standard_normal((4000, 4)) + np.array([1.0, 0, 0, 0])
    assert frechet(a, b) == pytest.approx(5.0, rel=0.08)
    fresh = rng.standard_normal((4000, 4))
    shifts = [frechet(a, fresh + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts) and shifts[0] < 0.02 and shifts[-1] == pytest.approx(4 * 4, rel=0.05)


def test_fd_interval_contains_self_and_separates_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((120, 6)), rng.standard_normal((120, 6))
    same = fd_interval(a, a, n_boot=300)
    assert same.value == pytest.approx(0, abs=1e-9) and same.lo == 0.0 < same.hi  # bias-shifted: contains 0
    floor = fd_interval(a, b, n_boot=300)
    assert floor.lo <= floor.value <= floor.hi
    shifted = fd_interval(a, b + 1.0, n_boot=300)  # |mu|^2 = 6
    assert shifted.lo > floor.hi and shifted.lo < 6 < shifted.hi + floor.value


def test_fd_paired_difference():
    rng = np.random.default_rng(2)
    ref, a = rng.standard_normal((100, 4)), rng.standard_normal((100, 4))
    same = fd_paired(a, a.copy(), ref, n_boot=200)
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, 0.0)  # same prompts, same clips: nothing to differ
    worse = fd_paired(a + 1.0, a, ref, n_boot=200)
    assert worse.lo > 0 and worse.value == pytest.approx(frechet(a + 1.0, ref) - frechet(a, ref))
    with pytest.raises(ValueError, match="differ in size"):
        fd_paired(a, a[:50], ref)


def test_chance_levels():
    truth = {"family": np.array([0, 0, 0, 1]), "kind": np.array([0, 1, 1, 1]), "tempo_band": np.array([0, 0, 1, 1])}
    vocab = {"family": ["a", "b"], "kind": ["x", "y", "z"], "tempo_band": ["s", "f"]}
    c = chance(truth, vocab)
    assert c["family"] == {"majority": 0.75, "uniform": 0.5} and c["kind"]["uniform"] == pytest.approx(1 / 3)
    assert c["joint"] == {"majority": 0.25, "uniform": pytest.approx(1 / 12)}  # four distinct combinations


def test_si_sdr_and_reconstruction():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20000))
    assert si_sdr_db(x, x) == math.inf
    assert si_sdr_db(x, 0.3 * x) > 100                          # scale-invariant
    noise = rng.standard_normal(x.shape)
    assert si_sdr_db(x, x + 0.1 * noise) == pytest.approx(20, abs=0.5)
    assert si_sdr_db(x, noise) < -20
    rec = reconstruction([x.astype(np.float32)], [x.astype(np.float32)])
    assert rec == {"mrstft": 0.0, "si_sdr_db": math.inf}
    assert reconstruction([x], [x + 0.1 * noise])["mrstft"] > 0.1


def test_eval_cli_table_and_json(judge_dir, corpus, tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["judge", "eval", "--judge", str(judge_dir), "--audio",
                                       str(corpus / "validation"), "--json", str(out), "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    assert "chance: majority" in result.stdout and "floor" in result.stdout
    report = json.loads(out.read_text())
    assert report["accuracy"]["joint"]["value"] == 1.0 and report["fd"]["reference_clips"] == 10
    assert report["fd"]["value"] == report["fd_floor"]["value"]  # validation vs held_out is the floor itself
    # a folder of WAVs is unlabelled: FD only
    clips = ["judge", "eval", "--judge", str(judge_dir), "--audio", str(corpus / "validation" / "clips")]
    result = CliRunner().invoke(main, [*clips, "--bootstrap", "50"])
    assert result.exit_code == 0 and "unlabelled: no accuracy" in result.stdout, result.output
    # paired with its captioned self, it takes the captions' labels and every difference is 0
    result = CliRunner().invoke(main, [*clips, "--paired", str(corpus / "validation"), "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "unlabelled" not in result.stdout and "joint       +0.000 [+0.000, +0.000]" in result.stdout
    assert "FD                   +0.00 [+0.00, +0.00]" in result.stdout


@pytest.mark.parametrize("case", ["judge", "audio", "label", "json", "paired", "format"])
def test_eval_bad_input(case, judge_dir, corpus, tmp_path):
    args = {"--judge": str(judge_dir), "--audio": str(corpus / "held_out")}
    needle = ""
    if case == "judge":
        args["--judge"], needle = str(tmp_path / "none"), "no judge.json"
    elif case == "audio":
        args["--audio"], needle = str(tmp_path / "none"), "does not exist"
    elif case == "label":
        bad = write_split(tmp_path / "gen", 2, 5) / "captions.jsonl"
        bad.write_text(bad.read_text().replace("tone/sine/slow", "tone/sine/medium"))
        args["--audio"], needle = str(bad), "tempo_band 'medium'"
    elif case == "json":
        args["--json"], needle = str(tmp_path / "no" / "r.json"), "does not exist"
    elif case == "paired":
        args["--paired"], needle = str(corpus / "train"), "24 clips"
    else:
        copy = tmp_path / "j"
        copy.mkdir()
        (copy / "judge.safetensors").write_bytes((judge_dir / "judge.safetensors").read_bytes())
        meta = json.loads((judge_dir / "judge.json").read_text())
        meta["config"]["octaves"] = 3
        (copy / "judge.json").write_text(json.dumps(meta))
        args["--judge"], needle = str(copy), "unknown fields ['octaves']"
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["judge", "eval", *[x for kv in args.items() for x in kv]])
    assert_one_error(result, needle)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("case", ["no_train", "exists", "steps", "unlabelled", "unseen"])
def test_train_bad_input(case, corpus, tmp_path):
    corpus_arg, out, extra, needle = str(corpus), tmp_path / "judge", [], ""
    if case == "no_train":
        corpus_arg, needle = str(corpus / "train"), "has no train/ folder"
    elif case == "exists":
        out.mkdir()
        needle = "already exists"
    elif case == "steps":
        extra, needle = ["--steps", "0"], "--steps 0 is not allowed"
    elif case == "unlabelled":
        bad = tmp_path / "c"
        write_split(bad / "train", 2, 0)
        rows = (bad / "train" / "captions.jsonl").read_text().replace(', "label": "tone/sine/slow"', "")
        (bad / "train" / "captions.jsonl").write_text(rows)
        corpus_arg, needle = str(bad), "has no label"
    else:  # a held-out label the training split never shows: refused before any audio is read
        bad = tmp_path / "c"
        write_split(bad / "train", 2, 0)
        write_split(bad / "held_out", 2, 1)
        rows = (bad / "held_out" / "captions.jsonl").read_text().replace("noise/hiss/fast", "brass/hiss/fast")
        (bad / "held_out" / "captions.jsonl").write_text(rows)
        corpus_arg, needle = str(bad), "family 'brass'"
    result = CliRunner().invoke(main, ["judge", "train", "--corpus", corpus_arg, "-o", str(out), *extra])
    assert_one_error(result, needle)
    assert out.exists() == (case == "exists") and not list(tmp_path.glob(".judge.partial*"))


def test_train_interrupted(corpus, tmp_path, monkeypatch):
    """Ctrl-C during training: one line, exit 130, no folder (the judge is written whole at the end)."""
    def interrupt(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("edgegen.judge.train.train_judge", interrupt)
    result = CliRunner().invoke(main, ["judge", "train", "--corpus", str(corpus), "-o", str(tmp_path / "j")])
    assert result.exit_code == 130 and result.stderr.strip().splitlines() == [
        f"edgegen: error: interrupted; nothing was written to {tmp_path / 'j'}"]
    assert not (tmp_path / "j").exists()
