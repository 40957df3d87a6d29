"""The Python LiteRT path: XNNPACK's weight cache (edgegen.weight_cache) and a runtime path without torch."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgegen.bundle_pipeline import BundlePipeline
from edgegen.request import GenerateRequest
from edgegen.weight_cache import WeightCache, valid_litert_cache
from tests.helpers import assert_one_error, run_cli

pytestmark = pytest.mark.litert
PROMPT = "a dog barking"


@pytest.fixture(scope="module")
def litert_bundle(bundle_factory):
    return bundle_factory("litert", "int8")


def _generate(bundle, cache):
    bp = BundlePipeline.open(bundle, threads=1, weight_cache=cache)
    return bp.generate(GenerateRequest(PROMPT, seconds=0.5, seed=3)), dict(bp.cache_uses)


def test_cache_is_built_then_hit_and_changes_nothing(litert_bundle, tmp_path):
    off, uses = _generate(litert_bundle, WeightCache.off())
    assert set(uses.values()) == {"off"}
    cache = WeightCache.resolve(tmp_path / "c")
    built, uses = _generate(litert_bundle, cache)
    assert set(uses.values()) == {"built"}
    files = sorted((tmp_path / "c").iterdir())
    assert len(files) == 3 and all(valid_litert_cache(f) for f in files)
    assert not any(".tmp-" in f.name for f in files)  # renamed into place
    hit, uses = _generate(litert_bundle, cache)
    assert set(uses.values()) == {"hit"}
    assert np.array_equal(off, built) and np.array_equal(off, hit)


def test_invalid_cache_file_is_rebuilt(litert_bundle, tmp_path):
    cache = WeightCache.resolve(tmp_path)
    manifest = json.loads((litert_bundle / "manifest.json").read_text())
    bad = cache.file("dit", manifest["artifacts"]["dit"]["sha256"])
    bad.write_bytes(b"\x04" + b"\x00" * 100)  # looks like nothing XNNPACK wrote
    wav, uses = _generate(litert_bundle, cache)
    assert uses["dit"] == "built" and valid_litert_cache(bad)
    assert np.array_equal(wav, _generate(litert_bundle, WeightCache.off())[0])


def test_unusable_cache_folder_is_one_line(litert_bundle, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("run", "-b", litert_bundle, "-p", PROMPT, "-s", "0.5", "-o", tmp_path / "a.wav", "--weight-cache",
                blocker / "sub")
    assert_one_error(r, "weight cache folder", "--no-weight-cache")
    assert not (tmp_path / "a.wav").exists()


def test_litert_run_never_imports_torch(litert_bundle, tmp_path):
    """`edgegen run` on a LiteRT bundle, in its own process: torch (~230 MB) is never loaded; stderr stays empty
    (LiteRT's native INFO logging is kept out of it)."""
    code = ("import sys\n"
            "from edgegen.cli import main\n"
            "try:\n"
            "    main(sys.argv[1:])\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    env = {**os.environ, "EDGEGEN_WEIGHT_CACHE": str(tmp_path / "c")}
    r = subprocess.run([sys.executable, "-c", code, "run", "-b", str(litert_bundle), "-p", PROMPT, "-s", "0.5",
                        "-o", str(tmp_path / "a.wav")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "NO-TORCH"
    assert "INFO" not in r.stderr and "WARNING" not in r.stderr, r.stderr
    assert len(list((tmp_path / "c").iterdir())) == 3  # the CLI uses the cache by default
