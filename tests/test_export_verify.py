"""Exports verify themselves (issue 13, item 4): `edgegen export` runs every artifact in its runtime against the
reference component (edgegen parity, before the staging folder is renamed) and publishes only a bundle whose
components meet their gates; the manifest's `verification` records the figures, or that `--no-verify` skipped it.

Real exports of random:tiny in both runtimes; the unmeetable floor is a recipe asking an int8 component for 150 dB
(the DiT, or the text encoder where the flow is tested end to end: its int8 lowering takes a third of the DiT's).
"""

from __future__ import annotations

import json
import shutil

import pytest

from edgegen.bundle_pipeline import BundlePipeline
from edgegen.common import BACKENDS, COMPONENTS
from edgegen.parity import check_parity
from tests.helpers import assert_edited_manifest_refused, invoke_cli, perturb_

HIGH_FLOOR = """name = "int8-unreachable"
[components.text_encoder]
sqnr_floor_db = 20.0
rules = [{ pattern = "*", scheme = "int8" }]
[components.dit]
sqnr_floor_db = 150.0
rules = [{ pattern = "*", scheme = "int8" }]
[components.decoder]
rules = [{ pattern = "*", scheme = "fp32" }]
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_export_records_its_verification(tiny, bundle_factory, backend):
    """A default export verified itself: the manifest holds parity's own figures for every component (the same
    numbers `edgegen parity` gives the published bundle), each at or above its recipe's floor."""
    path = bundle_factory(backend, "int8")
    v = json.loads((path / "manifest.json").read_text())["verification"]
    assert v["verified"] is True and v["tokens_match"] is True and v["prompts"] == 3 and v["seconds_taken"] > 0
    assert set(v["components"]) == set(COMPONENTS)
    report = check_parity(BundlePipeline.open(path), tiny, seed=v["seed"], seconds=v["seconds"]).to_json()
    for comp, fig in v["components"].items():
        entry = report["components"][comp]
        assert fig["passed"] and fig["gate"] == entry["gate"]
        assert {k: fig[k] for k in ("sqnr_db", "rel_err", "max_abs", "cosine")} == pytest.approx(entry["metrics"],
                                                                                              rel=1e-6)
    dit, decoder = v["components"]["dit"], v["components"]["decoder"]
    assert dit["gate"] == {"metric": "sqnr_db", "threshold": 20.0} and dit["sqnr_db"] >= 20.0
    assert decoder["gate"]["metric"] == "rel_err" and decoder["rel_err"] <= 1e-4
    assert decoder["mrstft"] == pytest.approx(report["components"]["decoder"]["mrstft"], rel=1e-6)
    assert decoder["mrstft"] < 1e-3
    e2e = v["end_to_end"]
    assert not e2e["gated"] and e2e["passed"] is None and e2e["mrstft"] > 0  # reported, not gated
    assert e2e["mrstft"] == pytest.approx(report["end_to_end"]["mrstft"], rel=1e-6)


def _export(*args: str):
    return invoke_cli("export", "-m", "random:tiny", *args)


TE_HIGH_FLOOR = HIGH_FLOOR.replace("sqnr_floor_db = 20.0", "sqnr_floor_db = 150.0", 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unmet_floor_is_refused_and_no_verify_publishes(tmp_path, backend):
    recipe = tmp_path / "high.toml"
    recipe.write_text(TE_HIGH_FLOOR)
    root = tmp_path / "bundles"
    root.mkdir()
    out = root / "tiny"
    args = ("-t", f"host-{backend}", "-r", str(recipe), "-c", "text_encoder", "-o", str(out), "--zip")
    res = _export(*args)
    assert res.exit_code == 1, (res.output, res.exception)
    # the per-stage table on stdout: the exported text encoder fails, the stages the reference stood in for are not
    # rows
    table = res.stdout.splitlines()
    assert table[0].startswith(f"parity  {out}  ({backend}, recipe int8-unreachable)")
    assert "MR-STFT" in table[1]
    rows = {line.split()[0]: line for line in table[2:] if not line.startswith("overall")}
    assert set(rows) == {"text_encoder", "end_to_end"}
    assert "SQNR >= 150 dB" in rows["text_encoder"] and rows["text_encoder"].endswith("FAIL")
    assert "report only" in rows["end_to_end"] and rows["end_to_end"].endswith("not gated")  # passed: null
    assert table[-1] == "overall: FAIL"
    errors = [line for line in res.stderr.splitlines() if line.startswith("edgegen: error:")]
    assert len(errors) == 1, res.stderr
    assert "text_encoder: SQNR" in errors[0] and "floor 150 dB" in errors[0] and "dB short" in errors[0]
    assert "--no-verify" in errors[0] and "float" in errors[0]
    assert list(root.iterdir()) == []  # no bundle, no zip, no staging folder

    res = _export(*args, "--no-verify")
    assert res.exit_code == 0, (res.output, res.exception)
    assert "not verified (--no-verify)" in res.stdout and " verify " not in res.stderr
    assert sorted(p.name for p in root.iterdir()) == ["tiny", "tiny.zip"]
    assert json.loads((out / "manifest.json").read_text())["verification"] == {"verified": False,
                                                                               "reason": "--no-verify"}
    res = invoke_cli("info", out.with_suffix(".zip"))
    assert res.exit_code == 0 and "checksums OK" in res.stdout


def test_partial_export_verifies_with_reference_stand_ins(tmp_path):
    """`--components dit`: the DiT is gated on the trajectory the reference text encoder conditions; the manifest
    names the stages the reference ran for it."""
    out = tmp_path / "dit-only"
    res = _export("-t", "host-litert", "-r", "int8", "-c", "dit", "-o", str(out))
    assert res.exit_code == 0, (res.output, res.exception)
    assert "verified against random:tiny" in res.stdout and "dit " in res.stdout
    assert any(" verify " in line and "parity of dit" in line for line in res.stderr.splitlines()), res.stderr
    v = json.loads((out / "manifest.json").read_text())["verification"]
    assert v["verified"] and set(v["components"]) == {"dit"} and v["components"]["dit"]["sqnr_db"] >= 20.0
    assert v["end_to_end"]["reference_components"] == ["text_encoder", "decoder"]


def test_manifest_verification_is_validated(bundle_factory, tmp_path):
    assert_edited_manifest_refused(bundle_factory("litert", "int8"), tmp_path,
                                   lambda m: m.update(verification={"verified": "yes"}),
                                   r"verification\.verified is \"yes\"; expected true or false")


def test_verification_failure_leaves_a_forced_bundle_in_place(tiny, bundle_factory, tmp_path):
    """With --force, a refused export replaces nothing: the bundle already at the output path stays as it was."""
    from edgegen.export import export_bundle
    from edgegen.export.verify import VerificationError
    from edgegen.recipes import load_recipe, load_target

    out = tmp_path / "b"
    shutil.copytree(bundle_factory("litert", "int8"), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    recipe = tmp_path / "high.toml"
    recipe.write_text(HIGH_FLOOR)
    with pytest.raises(VerificationError, match=r"dit: SQNR [\d.]+ dB < the recipe's floor 150 dB") as exc:
        export_bundle(tiny, target=load_target("host-litert"), recipe=load_recipe(recipe), out=out, force=True,
                      components=("dit",))
    assert not exc.value.report.passed and "FAIL" in exc.value.table
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "high.toml"]


def test_fp32_bundle_unlike_its_reference_is_refused(tiny, bundle_factory):
    """An fp32 artifact off its reference by more than 1e-4 is refused, with advice that is not about floors."""
    import copy

    from edgegen.export.verify import VerificationError, verify_bundle

    other = copy.deepcopy(tiny)
    perturb_(other.decoder, 0.05)
    with pytest.raises(VerificationError, match=r"decoder: relative error \S+ > 0\.0001 \(\d+x the fp32 tolerance\); "
                                                r"end_to_end: relative error \S+ > 0\.001 \(all components fp32\)\. "
                                                r"The converted model no longer computes") as exc:
        verify_bundle(bundle_factory("litert", "fp32"), other)
    assert [c for c, r in exc.value.report.components.items() if not r.passed] == ["decoder"]
