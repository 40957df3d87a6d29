"""benchmarks/speed/bare_dit.py --against-harness: the harness's DiT step and bare runtime calls, interleaved in one
process (the suite's check of issue 14's "harness DiT step within 10% of the bare call")."""

import pytest

from benchmarks.speed import bare_dit


@pytest.mark.parametrize("backend", ["litert", "executorch"])
def test_against_harness_interleaves_generations_and_bare_calls(bundle_factory, backend, monkeypatch):
    order = []
    loader = "_litert" if backend == "litert" else "_executorch"
    real_loader = getattr(bare_dit, loader)

    def load(path, threads):
        call = real_loader(path, threads)
        return lambda named: order.append("b") or call(named)

    monkeypatch.setattr(bare_dit, loader, load)
    from edgegen.bundle_pipeline import BundlePipeline

    real_generate = BundlePipeline.generate
    monkeypatch.setattr(BundlePipeline, "generate", lambda self, *a, **k: order.append("h")
                        or real_generate(self, *a, **k))
    r = bare_dit.against_harness(bundle_factory(backend, "fp32"), threads=2, calls=2, rounds=3, seconds=None)
    # a warm-up of each, then rounds of one generation and 2 bare calls, the order swapped every other round
    assert "".join(order) == "hbb" + "hbb" + "bbh" + "hbb"
    assert r["backend"] == backend and r["rounds"] == 3 and len(r["round_ratios"]) == 3
    assert r["harness_dit_step_s"] > 0 and r["dit_step_s"] > 0 and all(x > 0 for x in r["round_ratios"])
