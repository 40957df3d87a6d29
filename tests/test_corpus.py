"""edgegen.corpus: tiny renders (~1 s clips), determinism, resume, splits, captions, held-out phrasings, bad input."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgegen.errors import EdgegenError
from tests.helpers import assert_one_error

pytestmark = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file()
    or importlib.util.find_spec("music21") is None,
    reason="needs Debian fluidsynth + fluid-soundfont-gm and music21 (scripts/setup.sh installs them)")

TINY = {"chorale": 2, "fiddle tune": 1, "drum loop": 1, "bass line": 1, "single note": 1}
SAMPLES = 22 * 2048  # 1.02 s


@pytest.fixture(scope="module")
def corpus():
    from edgegen import corpus

    return corpus


@pytest.fixture(scope="module")
def tiny(corpus, tmp_path_factory) -> Path:
    return corpus.render_corpus(tmp_path_factory.mktemp("c") / "a", seed=3, counts=TINY, clip_samples=SAMPLES,
                                progress_every=0)


def test_render_writes_what_train_reads(tiny, corpus):
    from edgegen.train.data import load_clip, read_captions

    rows = []
    for split in corpus.SPLITS:
        path = tiny / split / "captions.jsonl"
        if path.read_text():
            recs = read_captions(path)
            rows += recs
            for r in recs:
                audio, why = load_clip(path.parent / r.path, sample_rate=44100, length=SAMPLES)
                assert audio is not None, why
                family, kind, band = r.label.split("/")
                assert family and kind and band in ("slow", "moderate", "fast", "none")
                assert r.seconds == pytest.approx(SAMPLES / 44100, abs=1e-5)
    assert len(rows) == sum(TINY.values())
    sums = (tiny / "SHA256SUMS").read_text().splitlines()
    assert len([s for s in sums if s.endswith(".wav")]) == len(rows)
    import soundfile as sf

    info = sf.info(str(next(tiny.glob("*/clips/*.wav"))))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 2, SAMPLES, "PCM_16")
    labels = [json.loads(l) for s in corpus.SPLITS for l in (tiny / s / "labels.jsonl").read_text().splitlines()]
    assert {"family", "kind", "tempo_band", "dynamics", "instrument", "source", "split"} <= set(labels[0])


def test_same_seed_is_byte_identical_and_resumes(tiny, corpus, tmp_path, capsys):
    again = corpus.render_corpus(tmp_path / "b", seed=3, counts=TINY, clip_samples=SAMPLES, progress_every=0)
    assert (again / "SHA256SUMS").read_bytes() == (tiny / "SHA256SUMS").read_bytes()
    assert "ETA" in capsys.readouterr().err
    assert corpus.verify_corpus(again, against=tiny / "SHA256SUMS") == []
    # resume: nothing is rendered again; a damaged clip is
    clip = next(again.glob("train/clips/*.wav"))
    clip.write_bytes(clip.read_bytes()[:100])
    corpus.render_corpus(again, seed=3, counts=TINY, clip_samples=SAMPLES, progress_every=0)
    log = [json.loads(line) for line in (again / "render-log.jsonl").read_text().splitlines()]
    assert [r["rendered"] for r in log] == [sum(TINY.values()), 1]
    assert (again / "SHA256SUMS").read_bytes() == (tiny / "SHA256SUMS").read_bytes()
    other = corpus.render_corpus(tmp_path / "c", seed=4, counts={"drum loop": 1}, clip_samples=SAMPLES)
    bad = corpus.verify_corpus(other, against=tiny / "SHA256SUMS")
    assert bad and any("differs" in b or "missing" in b for b in bad)


def test_verify_sample_rerenders_in_a_fresh_folder(tiny, corpus):
    names, bad = corpus.verify_sample(seed=3, sample=2, counts=TINY, clip_samples=SAMPLES,
                                      against=tiny / "SHA256SUMS")
    assert len(names) == 2 + 1 + 8 + 1 and bad == []  # 2 clips, config, 8 captions/labels tables, summary


def test_other_settings_in_the_same_folder_are_refused(tiny, corpus):
    with pytest.raises(EdgegenError, match="other settings"):
        corpus.render_corpus(tiny, seed=5, counts=TINY, clip_samples=SAMPLES)


@pytest.fixture(scope="module")
def plan(corpus):
    counts = {"chorale": 16, "drum loop": 60, "bass line": 40, "arpeggio": 40, "chords": 40, "single note": 40}
    return corpus.build_plan(seed=0, counts=counts, clip_samples=corpus.DEFAULT_CLIP_SAMPLES)


def test_splits_do_not_leak(plan, corpus):
    by_split = {s: [i for i in plan if i.split == s] for s in corpus.SPLITS}
    assert all(by_split.values())
    sources = {s: {i.source for i in items} for s, items in by_split.items()}
    seeds = {s: {i.labels.get("pattern_seed") for i in items} - {None} for s, items in by_split.items()}
    for a in corpus.SPLITS:
        for b in corpus.SPLITS:
            if a < b:
                assert not sources[a] & sources[b] and not seeds[a] & seeds[b]
    pieces = {i.labels["piece"] for i in plan if "piece" in i.labels}
    assert all(len({i.split for i in plan if i.labels.get("piece") == p}) == 1 for p in pieces)
    assert len({i.id for i in plan}) == len(plan)


def test_captions_vary_and_held_out_phrasings_stay_out_of_train(plan, corpus):
    train = [i.caption.lower() for i in plan if i.split == "train"]
    assert len(set(train)) > 0.9 * len(train)
    drums = [i.caption for i in plan if i.kind == "drum loop"]
    starts = {c.split(",")[0].split(" ")[0].lower() for c in drums}
    assert len(starts) >= 4  # several templates and word orders
    for word in corpus.held_out_words():
        assert not any(word.lower() in c for c in train), word
    held = [i.held_out_caption.lower() for i in plan]
    assert all(any(w.lower() in c for w in corpus.held_out_words()) for c in held)
    assert all(str(i.labels["bpm"]) in i.held_out_caption for i in plan if i.labels["bpm"])


def test_plan_is_deterministic(plan, corpus):
    counts = {"drum loop": 60, "bass line": 40}
    a = corpus.build_plan(seed=0, counts=counts, clip_samples=corpus.DEFAULT_CLIP_SAMPLES)
    same = [i for i in plan if i.kind in counts]
    assert [(i.id, i.caption, i.params, i.split) for i in a] == [(i.id, i.caption, i.params, i.split) for i in same]


def test_loudness_normalisation():
    from edgegen.corpus.synth import loudness_db, normalise

    t = np.arange(44100 * 2) / 44100
    x = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32) * 0.01
    y = normalise(x, target_db=-20.0)
    assert loudness_db(y) == pytest.approx(-20.0, abs=0.05)
    loud = normalise(x, target_db=0.0)  # the peak ceiling wins
    assert float(np.abs(loud).max()) == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert np.array_equal(normalise(np.zeros((2, 100), np.float32), target_db=-20), np.zeros((2, 100)))


def _corpus(args, capsys) -> subprocess.CompletedProcess:
    """`python -m edgegen.corpus ARGS` through its own main() in this process, as a result for assert_one_error."""
    from edgegen.corpus.__main__ import main

    code = main(args)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "edgegen.corpus", *args], code, out.out, out.err)


def test_missing_synthesizer_or_soundfont_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEGEN_FLUIDSYNTH_LIB", str(tmp_path / "libfluidsynth.so.3"))
    assert_one_error(_corpus(["render", "--out", str(tmp_path / "x"), "--clips-per-kind", "1"], capsys),
                     "apt-get install fluidsynth")
    monkeypatch.undo()
    assert_one_error(_corpus(["render", "--out", str(tmp_path / "x"), "--soundfont", str(tmp_path / "no.sf2")], capsys),
                     "fluid-soundfont-gm")
    (tmp_path / "bad.sf2").write_bytes(b"not a soundfont")
    assert_one_error(_corpus(["render", "--out", str(tmp_path / "x"), "--soundfont", str(tmp_path / "bad.sf2")],
                             capsys), "not a SoundFont")
    assert not (tmp_path / "x").exists()


def test_corrupt_score_is_one_error(tmp_path):
    from edgegen.corpus.scores import load_piece

    for name, data in [("bad.mid", b"MThd\x00\x00\x00\x06\x00\x01\x00\x05garbage"), ("bad.xml", b"<score-partwise><")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(EdgegenError, match=f"cannot read score file .*{name}") as exc:
            load_piece(tmp_path / name)
        assert "\n" not in str(exc.value)


def test_failed_render_leaves_nothing_half_written(corpus, tmp_path, monkeypatch, capsys):
    import edgegen.corpus.render as r

    calls = []

    def failing(tools, notes, channels, *, samples):
        calls.append(1)
        if len(calls) == 2:
            raise EdgegenError("fluidsynth rendered non-finite samples; nothing was written")
        return np.full((2, samples), 0.1, np.float32)

    monkeypatch.setattr(r, "render", failing)
    assert_one_error(_corpus(["render", "--out", str(tmp_path / "x"), "--clips-per-kind", "1", "--clip-seconds", "0.5"],
                             capsys), "non-finite")
    assert len(list((tmp_path / "x").rglob("*.wav"))) == 1 and not list((tmp_path / "x").rglob(".*partial*"))
    assert not (tmp_path / "x" / "SHA256SUMS").exists() and not (tmp_path / "x" / "train" / "captions.jsonl").exists()


def test_bad_arguments_are_one_line(capsys, tmp_path):
    assert_one_error(_corpus(["render", "--clip-seconds", "-1", "--out", str(tmp_path / "y")], capsys),
                     "--clip-seconds")
    assert_one_error(_corpus(["verify", "--seed", "1"], capsys), "committed checksum list")
    from edgegen.corpus import build_plan

    with pytest.raises(EdgegenError, match="unknown material kind"):
        build_plan(seed=0, counts={"kazoo": 1}, clip_samples=2048)


def test_committed_checksum_list_covers_the_default_corpus(corpus):
    from edgegen.corpus.render import read_checksums

    if not corpus.COMMITTED.is_file():
        pytest.skip("no committed checksum list yet")
    sums = read_checksums(corpus.COMMITTED)
    wavs = [n for n in sums if n.endswith(".wav")]
    assert len(wavs) == sum(corpus.DEFAULT_COUNTS.values())
    assert len(wavs) * corpus.DEFAULT_CLIP_SAMPLES / 44100 >= 2 * 3600
    assert {"config.json", "train/captions.jsonl", "held_out/captions_held_out_phrasing.jsonl"} <= set(sums)
