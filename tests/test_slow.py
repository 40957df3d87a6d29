"""The full-size tier (`pytest -m slow`, kept out of the default run and CI): random:sao-small exported for both
backends and gated by parity, the way a user's checkpoint would be.

Each export takes minutes and up to ~11 GB of memory (LiteRT), so this tier runs on demand, one test at a time:

    .venv/bin/python -m pytest -m slow -x -q                     # everything (~30-60 min on 2 cores)
    .venv/bin/python -m pytest -m slow -k "litert and int8"      # one row
"""

import json

import pytest

pytestmark = pytest.mark.slow

PROMPT = "128 BPM tech house drum loop"


@pytest.fixture(scope="module")
def sao_small():
    import edgegen

    return edgegen.load_pipeline("random:sao-small")


@pytest.mark.parametrize("recipe", ["fp32", "int8"])
@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_full_size_export_passes_parity(sao_small, tmp_path, backend, recipe):
    from edgegen.bundle_pipeline import BundlePipeline
    from edgegen.common import num_samples
    from edgegen.export import export_bundle
    from edgegen.parity import check_parity
    from edgegen.recipes import load_recipe, load_target
    from edgegen.request import GenerateRequest

    out = tmp_path / f"sao-small-{backend}-{recipe}"
    export_bundle(sao_small, target=load_target(f"host-{backend}"), recipe=load_recipe(recipe), out=out)
    bp = BundlePipeline.open(out)
    m = bp.bundle.manifest
    assert m.latent_length == 256 and m.decoder_stream.mode == "stateful"  # full size, streamed by default
    assert m.decoder_stream.window == 19 and m.decoder_stream.state_size == 244736
    assert m.artifacts["dit"].inputs[0].shape == (1, 64, 256)

    report = check_parity(bp, sao_small).to_json()
    assert report["passed"], json.dumps(report, indent=1)[:4000]
    gates = {c: report["components"][c]["gate"]["metric"] for c in ("text_encoder", "dit", "decoder")}
    if recipe == "fp32":  # fp32 everywhere: every stage within 1e-4 and the 8-step chain within 1e-3
        assert set(gates.values()) == {"rel_err"} and report["end_to_end"]["gated"]
    else:  # int8 text encoder and DiT, fp32 decoder
        assert gates == {"text_encoder": "sqnr_db", "dit": "sqnr_db", "decoder": "rel_err"}

    wav = bp.generate(GenerateRequest(PROMPT, seconds=0.7, seed=0))
    assert wav.shape == (2, num_samples(0.7, 44100)) == (2, 30870)
