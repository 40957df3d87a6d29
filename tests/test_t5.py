"""edgegen's T5 encoder against Hugging Face transformers' T5EncoderModel (a test-only dependency)."""

import pytest
import torch

from edgegen.components.t5_encoder import T5Config, T5Encoder, relative_position_buckets
from edgegen.errors import EdgegenError
from edgegen.metrics import rel_err

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


def _hf_tiny(seed=0):
    hf_cfg = transformers.T5Config(vocab_size=300, d_model=48, d_kv=12, d_ff=96, num_layers=2, num_heads=4,
                                   feed_forward_proj="relu", dropout_rate=0.0)
    torch.manual_seed(seed)
    hf = transformers.T5EncoderModel(hf_cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.3)
    cfg = T5Config(vocab_size=300, d_model=48, d_kv=12, d_ff=96, num_layers=2, num_heads=4)
    return hf, cfg


def test_fp16_precision_is_upstreams_cast_computed_in_fp32():
    """round_weights_("fp16") = T5EncoderModel.to(torch.float16) (upstream's T5Conditioner), computed in fp32."""
    hf, cfg = _hf_tiny()
    ours = T5Encoder(cfg, max_length=64).eval()
    ours.load_hf_state_dict(hf.state_dict(), source="hf")
    ours.round_weights_("fp16", source="hf")
    cast = hf.to(torch.float16).float()  # every weight rounded through fp16, as upstream loads T5
    ours_sd = ours.state_dict()
    for k, v in cast.state_dict().items():
        if k != "encoder.embed_tokens.weight":
            assert ours_sd[k].dtype == torch.float32 and torch.equal(ours_sd[k], v), k
    ids = torch.randint(3, 300, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.long)
    with torch.no_grad():
        assert rel_err(cast(input_ids=ids, attention_mask=mask).last_hidden_state, ours(ids, mask)) < 1e-6


def test_fp32_precision_keeps_the_weights():
    hf, cfg = _hf_tiny()
    ours = T5Encoder(cfg, max_length=64).eval()
    ours.load_hf_state_dict(hf.state_dict(), source="hf")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.round_weights_("fp32", source="hf")
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())
    with pytest.raises(EdgegenError, match="choose fp16 or fp32"):
        ours.round_weights_("bf16", source="hf")


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_random_models_round_t5_like_loaded_ones(precision):
    """random:* models take the same default (fp16-rounded T5 weights), so tests exercise the default path."""
    import edgegen

    pipe = edgegen.load_pipeline("random:tiny", t5_precision=precision)
    assert pipe.source.t5_precision == precision
    weights = [p for p in pipe.text_encoder.t5.parameters()]
    representable = all(torch.equal(p, p.half().float()) for p in weights)
    assert representable == (precision == "fp16")
    for other in (pipe.dit, pipe.decoder):  # only T5 is rounded
        assert not all(torch.equal(p, p.half().float()) for p in other.parameters())
