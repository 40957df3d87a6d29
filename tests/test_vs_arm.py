"""benchmarks/speed/vs_arm.py: an edgegen bundle against Arm's recipe built Arm's way, generations interleaved in one
process (the suite's verdict on issue 14's "x Arm" targets)."""

import json

import pytest

from benchmarks.speed import arm_recipe, vs_arm
from edgegen.errors import EdgegenError


@pytest.fixture(scope="module")
def arm_tiny(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("arm-litert")
    arm_recipe.export(tiny, out, log=lambda s: None)
    return out


def test_interleaves_both_generations_round_by_round(arm_tiny, bundle_factory, monkeypatch):
    order = []
    real_load = arm_recipe.load_generation

    def load(*a, **k):
        load_s, generate = real_load(*a, **k)
        return load_s, lambda: order.append("arm") or generate()

    monkeypatch.setattr(arm_recipe, "load_generation", load)
    from edgegen.bundle_pipeline import BundlePipeline

    real_generate = BundlePipeline.generate
    monkeypatch.setattr(BundlePipeline, "generate", lambda self, *a, **k: order.append("edgegen")
                        or real_generate(self, *a, **k))
    r = vs_arm.interleave(bundle_factory("litert", "fp32"), arm_tiny, rounds=3, seconds=None, threads=2)
    assert order == ["edgegen", "arm", "edgegen", "arm", "arm", "edgegen", "edgegen", "arm"]  # warm-up, then ABBA..
    assert len(r["round_ratios"]) == 3 and len(r["edgegen_e2e_runs_s"]) == len(r["arm_e2e_runs_s"]) == 3
    assert r["ratio"] == pytest.approx(r["edgegen"]["e2e"] / r["arm_recipe"]["e2e"])
    assert r["edgegen"]["decoder"] > 0 and r["arm_recipe"]["decoder"] > 0


def test_refuses_other_weights_another_runtime_or_no_export(arm_tiny, bundle_factory, tmp_path):
    with pytest.raises(EdgegenError, match="executorch bundle"):
        vs_arm.interleave(bundle_factory("executorch", "fp32"), arm_tiny, rounds=1, seconds=None, threads=2)
    with pytest.raises(EdgegenError, match="no export of Arm's recipe"):
        vs_arm.interleave(bundle_factory("litert", "fp32"), tmp_path, rounds=1, seconds=None, threads=2)
    other = tmp_path / "other"
    other.mkdir()
    info = json.loads((arm_tiny / "source.json").read_text())
    (other / "source.json").write_text(json.dumps({**info, "checkpoint_sha256": "another"}))
    with pytest.raises(EdgegenError, match="another checkpoint"):
        vs_arm.interleave(bundle_factory("litert", "fp32"), other, rounds=1, seconds=None, threads=2)
