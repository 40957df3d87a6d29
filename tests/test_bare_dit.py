"""benchmarks/bare_dit.py --against-harness: the harness's DiT step and bare runtime calls, interleaved in one
process (the suite's check of issue 14's "harness DiT step within 10% of the bare call")."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bare_dit():
    spec = importlib.util.spec_from_file_location("bare_dit", ROOT / "benchmarks" / "bare_dit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["litert", "executorch"])
def test_against_harness_interleaves_generations_and_bare_calls(bundle_factory, backend, monkeypatch):
    bare_dit = _bare_dit()
    order = []
    real_inputs = bare_dit._inputs
    monkeypatch.setattr(bare_dit, "_inputs", lambda *a: order.append("inputs") or real_inputs(*a))
    from edgegen.bundle_pipeline import BundlePipeline

    real_generate = BundlePipeline.generate
    monkeypatch.setattr(BundlePipeline, "generate", lambda self, *a, **k: order.append("harness")
                        or real_generate(self, *a, **k))
    r = bare_dit.against_harness(bundle_factory(backend, "fp32"), threads=1, calls=2, rounds=3, seconds=None)
    assert order == ["inputs"] + ["harness"] * 4  # a warm-up generation, then one per round
    assert r["backend"] == backend and r["rounds"] == 3 and len(r["round_ratios"]) == 3
    assert r["harness_dit_step_s"] > 0 and r["dit_step_s"] > 0
    assert r["ratio"] == pytest.approx(r["harness_dit_step_s"] / r["dit_step_s"])
    assert all(x > 0 for x in r["round_ratios"])
