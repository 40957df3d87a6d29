import pytest

from edgegen.pipeline import ASSETS
from edgegen.tokenizer import Tokenizer


def test_eos_pad_mask():
    tok = Tokenizer(ASSETS / "spiece.model", max_length=64)
    ids, mask = tok.encode(["a dog barking", ""])
    n = len(tok.sp.encode("a dog barking"))
    assert ids.shape == (2, 64) and ids[0, n] == 1 and (ids[0, n + 1:] == 0).all()
    assert mask[0].sum() == n + 1 and mask[0, : n + 1].all()
    assert ids[1, 0] == 1 and mask[1].sum() == 1  # empty prompt -> EOS only


def test_truncation_keeps_eos_last_and_warns():
    tok = Tokenizer(ASSETS / "spiece.model", max_length=64)
    with pytest.warns(UserWarning, match="truncated to 64"):
        ids, mask = tok.encode(["warm piano " * 80])
    assert ids[0, 63] == 1 and mask.sum() == 64


def test_fit_refuses_an_over_long_prompt_unless_asked_to_truncate():
    from edgegen.errors import EdgegenError

    tok = Tokenizer(ASSETS / "spiece.model", max_length=64)
    short = "a dog barking"
    assert tok.fit(short, truncate=False) == len(tok.sp.encode(short)) + 1 == tok.count(short)
    exact = " ".join(["piano"] * 200)
    pieces = tok.sp.encode(exact)
    fits = tok.sp.decode(pieces[:63])  # 63 pieces + EOS = 64: the limit itself is fine
    assert tok.fit(fits, truncate=False) == 64
    long = "warm piano " * 80
    with pytest.raises(EdgegenError, match="the prompt is 161 tokens and this model takes at most 64"):
        tok.fit(long, truncate=False)
    assert tok.fit(long, truncate=True) == 161  # the caller accepted the cut: encode makes it
