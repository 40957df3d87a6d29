"""The typed contracts: `Manifest` reads and writes exactly the manifest.json export writes, refuses keys it does not
know (one line naming the key and the file), still opens manifests from earlier edgegen versions, and `ParityReport`
says `passed: null` for a row it does not gate."""

import json
import math
import shutil
from dataclasses import replace

import pytest

from edgegen.bundle import open_bundle
from edgegen.errors import EdgegenError
from edgegen.manifest import Manifest
from edgegen.metrics import Metrics, compare, rel_err, sqnr_db
from edgegen.parity import REPORT_SCHEMA, Gate, ParityReport, Row, format_report
from tests.helpers import assert_edited_manifest_refused

pytestmark = pytest.mark.litert


@pytest.fixture(scope="module")
def good(bundle_factory):
    return bundle_factory("litert", "int8")


def test_manifest_round_trip_is_byte_exact(good):
    text = (good / "manifest.json").read_text()
    m = Manifest.from_json(json.loads(text))
    assert json.dumps(m.to_json(), indent=2) + "\n" == text  # read -> write: the same bytes export wrote
    assert open_bundle(good).manifest == m  # and the reader's Manifest is that one
    assert m.backend == "litert" and m.recipe.name == "int8" and m.target.threads >= 1
    assert m.artifacts["dit"].input("x").shape == (1, 64, m.latent_length) and m.verification["verified"] is True


def _drop_newer_keys(m: dict) -> None:
    """A manifest as an earlier edgegen wrote it: no input `index`, no `t5_precision`, no rule `backend`, no
    `verification`."""
    for a in m["artifacts"].values():
        for i in a["inputs"]:
            i.pop("index")
    m["source"].pop("t5_precision")
    for c in m["recipe"]["components"].values():
        for r in c["rules"]:
            r.pop("backend")
    m.pop("verification")


def test_manifests_of_earlier_versions_still_open(good, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(good, old)
    m = json.loads((old / "manifest.json").read_text())
    _drop_newer_keys(m)
    (old / "manifest.json").write_text(json.dumps(m, indent=2))
    with open_bundle(old) as b:
        assert b.manifest.source.t5_precision is None and b.manifest.verification is None
        assert [i.index for i in b.manifest.artifacts["dit"].inputs] == [None] * 4
        assert json.dumps(b.manifest.to_json(), sort_keys=True) == json.dumps({
            **m, "recipe": {**m["recipe"], "components": {c: {**v, "rules": [{**r, "backend": None} for r in v["rules"]]}
                                                          for c, v in m["recipe"]["components"].items()}}},
            sort_keys=True)


@pytest.mark.parametrize("edit, key", [
    (lambda m: m.update(colour="red"), "colour"),
    (lambda m: m["artifacts"]["dit"].update(colour="red"), "artifacts.dit.colour"),
    (lambda m: m["sampler"].update(cfg_scale=7), "sampler.cfg_scale"),
    (lambda m: m["recipe"]["components"]["dit"]["rules"][0].update(colour="red"),
     r"recipe.components.dit.rules\[0\].colour"),
], ids=["top", "artifact", "sampler", "rule"])
def test_unknown_manifest_key_is_refused_in_one_line(good, tmp_path, edit, key):
    """Refused by open_bundle and `edgegen run` alike (exit 2, one line naming the manifest and the key)."""
    assert_edited_manifest_refused(good, tmp_path, edit, rf"manifest\.json: unknown key\(s\) {key} \(allowed")
    with pytest.raises(EdgegenError) as exc:
        open_bundle(tmp_path / "b")
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path / "b" / "manifest.json") in msg and "re-export" in msg


def _row(name, rel, gate, **kw):
    return Row.judged(name, Metrics(sqnr_db=-20 * math.log10(rel), rel_err=rel, max_abs=rel, cosine=1.0), gate, **kw)


def test_parity_report_ungated_row_is_null_not_true():
    rows = (_row("text_encoder", 1e-3, Gate("sqnr_db", 30.0)), _row("dit", 1e-3, Gate("sqnr_db", 20.0)),
            _row("decoder", 1e-6, Gate("rel_err", 1e-4), audio=True, mrstft=1e-4, info={"streamed": None}),
            _row("end_to_end", 0.3, None, audio=True, mrstft=0.5, info={"seconds": 0.7, "seed": 0}))
    report = ParityReport(bundle="b", backend="litert", recipe="int8", target="host-litert", model="random:tiny",
                          tokens_match=True, rows=rows)
    js = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert js["schema"] == REPORT_SCHEMA and js["passed"] is True and report.passed
    e2e = js["end_to_end"]
    assert e2e["passed"] is None and e2e["gated"] is False and e2e["threshold_rel_err"] is None
    assert e2e["mrstft"] == 0.5 and e2e["seconds"] == 0.7
    assert [js["components"][c]["passed"] for c in ("text_encoder", "dit", "decoder")] == [True] * 3
    assert "mrstft" in js["components"]["decoder"] and "mrstft" not in js["components"]["dit"]
    table = format_report(report)
    assert table.splitlines()[-2].startswith("end_to_end") and table.splitlines()[-2].endswith("not gated")
    assert table.splitlines()[-1] == "overall: PASS"
    # a non-finite output fails the row, gated or not, and so the report
    nan = Row.judged("end_to_end", compare([1.0], [1.0]), None, reason="the bundle's end-to-end audio holds 1 NaN")
    failed = replace(report, rows=(*report.without(["end_to_end"]).rows, nan))
    assert nan.passed is False and not failed.passed and failed.to_json()["end_to_end"]["passed"] is False
    assert format_report(failed).splitlines()[-3].endswith("FAIL")


def test_metrics_vocabulary():
    ref, got = [3.0, 4.0], [3.0, 4.5]
    assert rel_err(ref, got) == pytest.approx(0.1) == compare(ref, got).rel_err
    assert sqnr_db(ref, got) == pytest.approx(20.0) == compare(ref, got).sqnr_db
    assert sqnr_db(ref, ref) == math.inf and rel_err(ref, ref) == 0.0
    with pytest.raises(ValueError, match="shape mismatch"):
        rel_err([1.0], [1.0, 2.0])
