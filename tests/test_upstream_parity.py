"""edgegen against upstream stable-audio-tools 0.0.19, on a committed fixture.

`tests/fixtures/upstream/` was written by `tools/upstream/make_reference.py` (run in its own venv with the
upstream package): a small model of the SAO-small family built by upstream's factory, its checkpoint in the
official layout, a tiny random T5 folder, and upstream's outputs for every stage plus a full 8-step
ping-pong generation from injected noise. Regenerate with the commands in `tools/upstream/README.md`.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import edgegen
from tests.helpers import rel_err

FIX = Path(__file__).parent / "fixtures" / "upstream"


@pytest.fixture(scope="module")
def ref():
    return np.load(FIX / "reference.npz")


@pytest.fixture(scope="module")
def pipe():
    return edgegen.load_pipeline(FIX / "model", t5=FIX / "t5")


def test_tokenization(pipe, ref):
    prompts = json.loads((FIX / "reference_meta.json").read_text())["prompts"]
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = pipe.tokenize(prompts)
    assert np.array_equal(ids.numpy(), ref["prompt_input_ids"])
    assert np.array_equal(mask.numpy(), ref["prompt_attention_mask"])


@torch.no_grad()
def test_components(pipe, ref):
    t = lambda k: torch.from_numpy(ref[k])  # noqa: E731
    cross, glob = pipe.text_encoder(t("prompt_input_ids"), t("prompt_attention_mask"), t("seconds_total").float())
    assert rel_err(ref["cross_attn_cond"], cross) <= 1e-5
    assert rel_err(ref["global_cond"], glob) <= 1e-5
    v = pipe.dit(t("dit_x"), t("dit_t").float(), t("cross_attn_cond"), t("global_cond"))
    assert rel_err(ref["dit_v"], v) <= 1e-5
    assert rel_err(ref["dec_audio"], pipe.decoder(t("dec_latents"))) <= 1e-5
    assert rel_err(ref["enc_mean"], pipe.encode_audio(t("enc_audio"))) <= 1e-5
    assert rel_err(ref["enc_sample"], pipe.encode_audio(t("enc_audio"), t("enc_noise"))) <= 1e-5


def test_eight_step_generation_from_injected_noise(pipe, ref):
    np.testing.assert_allclose(edgegen.sampler.schedule(8), ref["gen_sigmas"], atol=1e-7)
    seconds = float(np.ravel(ref["gen_seconds_total"])[0])
    wav = pipe.generate("a dog barking", seconds_total=seconds, noise=ref["gen_noise"])
    assert rel_err(ref["gen_audio"][0, :, : wav.shape[1]], wav) <= 1e-4
