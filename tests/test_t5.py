"""edgegen's T5 encoder against Hugging Face transformers' T5EncoderModel (a test-only dependency)."""

import pytest
import torch

from edgegen.components.t5_encoder import T5Config, T5Encoder, relative_position_buckets
from tests.helpers import rel_err

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("ff", ["relu", "gated-gelu"])
def test_matches_transformers_with_padding(ff):
    hf_cfg = transformers.T5Config(vocab_size=300, d_model=48, d_kv=12, d_ff=96, num_layers=3, num_heads=4,
                                   relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                   feed_forward_proj=ff, dropout_rate=0.0)
    torch.manual_seed(0)
    hf = transformers.T5EncoderModel(hf_cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.3)
    cfg = T5Config(vocab_size=300, d_model=48, d_kv=12, d_ff=96, num_layers=3, num_heads=4, feed_forward_proj=ff)
    ours = T5Encoder(cfg, max_length=64).eval()
    ours.load_hf_state_dict(hf.state_dict(), source="hf")
    ids = torch.randint(3, 300, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[0, 10:] = 0  # padding
    ids[0, 10:] = 0
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    assert rel_err(ref, got) < 1e-5
    assert rel_err(ref[0, :10], got[0, :10]) < 1e-5


def test_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    pos = torch.arange(64)
    ref = T5Attention._relative_position_bucket(pos[None, :] - pos[:, None], bidirectional=True,
                                                num_buckets=32, max_distance=128)
    assert torch.equal(relative_position_buckets(64, num_buckets=32, max_distance=128), ref)
