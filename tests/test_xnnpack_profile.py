"""Target profiles are honoured or refused, never dropped (issue 36): the XNNPACK flags and fp16 compute a profile
asks for reach LiteRT (Python and the native runner compute the same bit field), a setting ExecuTorch cannot apply
is refused at export, and every report names the precision each artifact ran in."""

import dataclasses

import pytest

from edgegen.errors import EdgegenError
from edgegen.export.support import check_supported
from edgegen.recipes import load_recipe, load_target
from edgegen.xnnpack import FLAG_BITS, fp16_arithmetic, litert_settings, precision_report, profile_flags
from tests.helpers import ARM64_CPUINFO


def test_flag_bits_are_litert_s():
    """The values of LiteRT's tflite/delegates/xnnpack/xnnpack_delegate.h, which the native runner repeats."""
    assert (FLAG_BITS["QS8"], FLAG_BITS["QU8"], FLAG_BITS["FORCE_FP16"], FLAG_BITS["DYNAMIC_FULLY_CONNECTED"],
            FLAG_BITS["ENABLE_LATEST_OPERATORS"], FLAG_BITS["ENABLE_SUBGRAPH_RESHAPING"]) == (1, 2, 4, 8, 0x40, 0x80)
    assert profile_flags(load_target("android-arm64-litert")) == 1 | 2 | 8 | 0x40 | 0x80
    assert profile_flags(load_target("host-executorch")) == 0


def test_fp16_arithmetic_is_read_from_cpuinfo():
    assert fp16_arithmetic(ARM64_CPUINFO.read_text())
    assert not fp16_arithmetic("flags\t\t: fpu sse2 avx2 f16c avx512_vnni\n")  # f16c converts, it does not compute


def test_an_executorch_profile_with_runtime_flags_is_refused():
    target = dataclasses.replace(load_target("android-arm64-executorch"), xnnpack_flags=("QS8",))
    with pytest.raises(EdgegenError, match="cannot apply to ExecuTorch"):
        check_supported(load_recipe("mobile"), target)
    with pytest.raises(EdgegenError, match="unknown XNNPACK flag 'FAST'"):
        check_supported(load_recipe("mobile"), dataclasses.replace(load_target("host-litert"), xnnpack_flags=("FAST",)))


def test_mobile_decoder_asks_force_fp16_where_the_cpu_computes_fp16(bundle_factory):
    from edgegen.bundle import open_bundle

    m = open_bundle(bundle_factory("litert", "mobile", components=("decoder",), target="android-arm64-litert")).manifest
    base = profile_flags(m.target)
    assert litert_settings(m, "decoder", fp16=True) == (base | FLAG_BITS["FORCE_FP16"], "fp16")
    assert litert_settings(m, "decoder", fp16=False) == (base, "fp32")
    arm = precision_report(m, ARM64_CPUINFO.read_text())
    x86 = precision_report(m, "flags : fpu avx2 f16c\n")
    assert arm == {"decoder": {"precision": "fp16"}}
    assert x86["decoder"]["precision"] == "fp32" and x86["decoder"]["asked"] == "fp16" and "no fp16" in x86["decoder"]["why"]


def test_python_runtime_passes_force_fp16_to_xnnpack(bundle_factory, monkeypatch):
    """Where the CPU computes fp16, edgegen's LiteRT runtime compiles the `mobile` decoder with FORCE_FP16: its output
    moves by fp16-sized error (XNNPACK emulates fp16 on x86 too, which is why edgegen asks for it only on Arm).
    Dropping the flag would leave the two decodes bit-identical."""
    import numpy as np

    import edgegen.runtime as rt
    from edgegen.bundle import open_bundle
    from edgegen.metrics import sqnr_db

    bundle = open_bundle(bundle_factory("litert", "mobile", components=("decoder",), target="android-arm64-litert"))
    latents = np.random.default_rng(0).standard_normal(bundle.manifest.artifacts["decoder"].inputs[0].shape)

    assert bundle.manifest.artifacts["decoder"].compute_precision == "fp16"

    def decode(fp16: bool) -> np.ndarray:
        monkeypatch.setattr(rt, "fp16_arithmetic", lambda cpuinfo: fp16)
        decoder = rt.load_artifacts(bundle, threads=1)["decoder"]
        assert decoder.precision == ("fp16" if fp16 else "fp32")
        return decoder(**{decoder.input_names[0]: latents})[0]

    full, half = decode(False), decode(True)
    assert np.abs(half - full).max() > 0, "FORCE_FP16 did not reach XNNPACK"
    assert sqnr_db(full, half) >= load_recipe("mobile").components["decoder"].sqnr_floor_db


def test_bench_reports_the_precision_that_ran(bundle_factory):
    """On this x86 host (no fp16 arithmetic) the fp16 decoder that android-arm64-litert asks for runs fp32, and
    bench's table and JSON say so, with the reason."""
    import json

    from tests.helpers import invoke_cli

    res = invoke_cli("bench", "-b", bundle_factory("litert", "mobile", target="android-arm64-litert"), "--iters", "1",
                     "--warmup", "0")
    assert res.exit_code == 0, res.output
    precision = json.loads(res.stdout.strip().splitlines()[-1])["precision"]
    here = fp16_arithmetic(open("/proc/cpuinfo").read())
    assert precision["dit"] == {"precision": "fp32"}
    decoder = precision["decoder"]
    if here:
        assert decoder == {"precision": "fp16"}
    else:
        assert (decoder["precision"], decoder["asked"]) == ("fp32", "fp16") and "no fp16 arithmetic" in decoder["why"]
    assert "precision       text_encoder fp32, dit fp32, decoder" in res.stdout
