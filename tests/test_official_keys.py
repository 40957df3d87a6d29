"""The full SAO-small architecture expects exactly the 750 official tensors, names and shapes."""

from pathlib import Path

import torch

from edgegen import checkpoint as ckpt
from edgegen.config import ModelConfig
from edgegen.pipeline import ASSETS, PREFIXES, Pipeline, Source
from edgegen.presets import PRESETS
from edgegen.tokenizer import Tokenizer

FIXTURE_TSV = Path(__file__).parent / "fixtures" / "sao_small_state_dict_keys.tsv"


def test_sao_small_expects_the_750_official_tensors():
    raw, t5 = PRESETS["sao-small"]
    with torch.device("meta"):  # shapes only: no 2.4 GB of weights
        pipe = Pipeline(ModelConfig.from_dict(raw), t5, Tokenizer(ASSETS / "spiece.model"), Source("", "", "", ""))
    expected = {}
    for prefix, attr in PREFIXES.items():
        if (module := pipe._part(attr)) is not None:
            expected.update(ckpt.official_shapes(module, prefix))
    rows = [line.split("\t") for line in FIXTURE_TSV.read_text().splitlines() if line.strip()]
    official = {key: tuple(int(d) for d in shape.strip("[]").split(", ")) for key, shape, _ in rows}
    assert len(official) == 750
    assert expected == official
