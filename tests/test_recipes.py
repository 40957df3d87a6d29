"""Recipes and target profiles are data: they load, they are validated, the support matrix answers fast."""

import time

import pytest
import torch

from edgegen.errors import EdgegenError
from edgegen.export.support import check_supported
from edgegen.recipes import load_recipe, load_target, recipe_names, target_names


def test_every_recipe_and_target_loads():
    assert {"fp32", "int8", "int4", "mobile", "mixed", "fast", "size"} <= set(recipe_names())
    assert {"host-executorch", "host-litert", "android-arm64-executorch", "android-arm64-litert"} <= set(target_names())
    for name in recipe_names():
        r = load_recipe(name)
        for comp, c in r.components.items():
            if any(rule.scheme != "fp32" for rule in c.rules):
                assert c.sqnr_floor_db is not None, (name, comp)


def test_first_match_wins_and_fp16_fallback():
    mixed, host = load_recipe("mixed"), load_target("host-executorch")
    assert mixed.rule_for("dit", "to_cond_embed.0", host).scheme == "fp32"
    assert mixed.rule_for("dit", "transformer.layers.3.ff.ff.0.proj", host).scheme == "int4"
    assert mixed.rule_for("dit", "transformer.layers.3.self_attn.to_qkv", host).scheme == "int8"
    mobile = load_recipe("mobile")
    assert mobile.resolved_rules("decoder", host)[0].scheme == "fp32"  # no fp16 compute on x86
    assert mobile.resolved_rules("decoder", load_target("android-arm64-executorch"))[0].scheme == "fp16"


INT4_G512 = """name = "g512"
[components.text_encoder]
rules = [{ pattern = "*", scheme = "fp32" }]
[components.dit]
sqnr_floor_db = 10.0
rules = [{ pattern = "*.ff.*", scheme = "int4", group_size = 512 }, { pattern = "*", scheme = "int8" }]
[components.decoder]
rules = [{ pattern = "*", scheme = "fp32" }]
"""


@pytest.mark.parametrize("target", ["host-litert", "android-arm64-litert", "host-executorch"])
def test_unsupported_combination_fails_fast_naming_nearest_row(target, tmp_path):
    start = time.perf_counter()
    with pytest.raises(EdgegenError, match="int4 group512 with layer-scoped rules; nearest supported row: int4 group"):
        check_supported(load_recipe(_write(tmp_path, INT4_G512)), load_target(target))
    assert time.perf_counter() - start < 0.5


def test_supported_combinations():
    for recipe in ("fp32", "int8", "int4", "mobile", "mixed", "fast"):  # per-layer rules on both backends
        for target in target_names():
            check_supported(load_recipe(recipe), load_target(target))


def test_backend_rules_apply_to_their_backend_only(tmp_path):
    """Rules with `backend` are dropped for the other backend's targets, and first-match order still holds."""
    decoder = ('sqnr_floor_db = 30.0\nrules = [{ pattern = "layers.7", scheme = "fp32", backend = "litert" }, '
               '{ pattern = "layers.0", scheme = "fp32", backend = "executorch" }, { pattern = "*", scheme = "int8" }]')
    recipe = load_recipe(_write(tmp_path, _recipe_text(decoder=decoder)))
    for target in ("host-litert", "android-arm64-litert"):
        tgt = load_target(target)
        assert recipe.rule_for("decoder", "layers.7", tgt).scheme == "fp32"
        assert recipe.rule_for("decoder", "layers.0", tgt).scheme == "int8"
    for target in ("host-executorch", "android-arm64-executorch"):
        tgt = load_target(target)
        assert recipe.rule_for("decoder", "layers.7", tgt).scheme == "int8"
        assert recipe.rule_for("decoder", "layers.0", tgt).scheme == "fp32"
    assert all(r.backend is None for r in recipe.resolved_rules("dit", load_target("host-litert")))


def test_fast_keeps_the_same_decoder_layers_float_on_both_backends():
    """Both runtimes quantize a decoder convolution's input per tensor, so `fast` has one set of float layers: the
    13 of quantize/fast.toml (ConvTransposes, input and output convolutions, block 1's six convolutions)."""
    from edgegen.components.oobleck import OOBLECK_CONFIGS, OobleckDecoder, conv_names

    fast = load_recipe("fast")
    with torch.device("meta"):  # SAO-small's five-block decoder (the layers fast.toml names), no weights
        names = conv_names(OobleckDecoder(OOBLECK_CONFIGS["sao-small"]))
    floats = {b: {n for n in names if fast.rule_for("decoder", n, load_target(f"host-{b}")).scheme == "fp32"}
              for b in ("executorch", "litert")}
    assert floats["executorch"] == floats["litert"] and len(floats["litert"]) == 13
    assert {"layers.0", "layers.7", "layers.1.layers.3.layers.3", "layers.5.layers.1"} <= floats["litert"]


def test_int4_decoder_is_refused_on_executorch(tmp_path):
    """ExecuTorch's decoder convolutions take int8 or fp32: an int4 decoder rule is refused before any work, and
    stays allowed on LiteRT's support matrix."""
    recipe = load_recipe(_write(tmp_path, _recipe_text(
        decoder='sqnr_floor_db = 20.0\nrules = [{ pattern = "*", scheme = "int4", group_size = 32 }]')))
    for target in ("host-executorch", "android-arm64-executorch"):
        with pytest.raises(EdgegenError, match=r"decoder rule '\*' -> int4 .*int8 only"):
            check_supported(recipe, load_target(target))
    check_supported(recipe, load_target("host-litert"))


def test_weight_only_int8_is_litert_only():
    """`size` (int8w: int8 weights, fp32 compute) exports on LiteRT; ExecuTorch refuses it in milliseconds, saying
    why, before any work."""
    for target in ("host-litert", "android-arm64-litert"):
        check_supported(load_recipe("size"), load_target(target))
    for target in ("host-executorch", "android-arm64-executorch"):
        with pytest.raises(EdgegenError, match=r"int8w per_channel .*no weight-only int8 GEMM.*use int8, or int8w on "
                                               r"LiteRT"):
            check_supported(load_recipe("size"), load_target(target))


def _write(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


_FP32 = 'rules = [{ pattern = "*", scheme = "fp32" }]'


def _recipe_text(**tables):
    """A valid fp32 recipe with the given components' table bodies replaced (None: the table is left out)."""
    body = 'name = "x"\n'
    for comp in ("text_encoder", "dit", "decoder"):
        table = tables.get(comp, _FP32)
        body += "" if table is None else f"\n[components.{comp}]\n{table}\n"
    return body


def test_valid_recipe_text_loads(tmp_path):
    """The base of the bad-recipe cases below is itself valid, so each case fails for its own reason."""
    r = load_recipe(_write(tmp_path, _recipe_text(dit='sqnr_floor_db = 20\nrules = [{ pattern = "*", scheme = "int4", '
                                                      'group_size = 64 }]')))
    assert r.components["dit"].rules[0].group_size == 64 and r.components["dit"].sqnr_floor_db == 20.0
    assert r.components["decoder"].rules[0].scheme == "fp32"


_INT8 = 'sqnr_floor_db = 20\nrules = [{ pattern = "*", scheme = "int8"'


@pytest.mark.parametrize("body,needle", [
    (_recipe_text(dit='rules = [{ pattern = "*", scheme = "int8" }]'), r"components\.dit\.sqnr_floor_db is missing"),
    (_recipe_text(dit='sqnr_floor_db = 20\nrules = [{ pattern = "*", scheme = "int3" }]'),
     r'components\.dit\.rules\[0\]\.scheme = "int3" is not allowed: expected one of fp32, fp16, int8, int8w, int4'),
    (_recipe_text(dit='rules = [{ pattern = "*", scheme = "fp32", colour = "red" }]'),
     r"unknown key\(s\) components\.dit\.rules\[0\]\.colour \(allowed in"),
    (_recipe_text() + '\n[components.vae]\nrules = []\n', r"unknown key\(s\) components\.vae "),
    ('colour = "red"\n' + _recipe_text(), r"unknown key\(s\) colour \(allowed: name, description, components\)"),
    (_recipe_text(decoder='sqnr_floor_db = 30\nrules = [{ pattern = "layers.1*", scheme = "fp16" }]'),
     "whole component"),
    ("name = \n", "invalid TOML"),
    # 17.8: wrong types and ranges name the field, the value and what is allowed
    (_recipe_text(dit='sqnr_floor_db = 12\nrules = [{ pattern = "*", scheme = "int4", group_size = "big" }]'),
     r'components\.dit\.rules\[0\]\.group_size = "big" is not allowed: expected a positive integer'),
    (_recipe_text(dit='sqnr_floor_db = 12\nrules = [{ pattern = "*", scheme = "int4", group_size = 0 }]'),
     r"group_size = 0 is not allowed"),
    (_recipe_text(dit=_INT8 + ', group_size = 64 }]'), r"group_size = 64 is not allowed: group_size applies only to int4"),
    (_recipe_text(dit=_INT8 + ', fallback = "fp32" }]'), r"fallback applies only to an fp16 rule"),
    (_recipe_text(dit=_INT8 + ', backend = "coreml" }]'),
     r'components\.dit\.rules\[0\]\.backend = "coreml" is not allowed: expected one of executorch, litert'),
    (_recipe_text(decoder='sqnr_floor_db = 30\nrules = [{ pattern = "*", scheme = "fp16", fallback = "fp16" }]'),
     r'fallback = "fp16" is not allowed: expected one of fp32, int8, int4'),
    (_recipe_text(dit='sqnr_floor_db = "high"\nrules = [{ pattern = "*", scheme = "int8" }]'),
     r'components\.dit\.sqnr_floor_db = "high" is not allowed: expected a number of dB'),
    (_recipe_text(dit='sqnr_floor_db = -3\nrules = [{ pattern = "*", scheme = "int8" }]'), r"sqnr_floor_db = -3 is not"),
    (_recipe_text(dit='rules = []'), r"components\.dit\.rules = \[\] is not allowed: expected a non-empty array"),
    (_recipe_text(dit='rules = [{ scheme = "fp32" }]'), r"components\.dit\.rules\[0\]\.pattern is missing"),
    (_recipe_text(text_encoder='rules = [{ pattern = "", scheme = "fp32" }]'), r'pattern = "" is not allowed'),
    ('name = 3\n' + _recipe_text()[len('name = "x"\n'):], r"name = 3 is not allowed: expected a non-empty string"),
    # 17.9: a string where an array belongs is a type error, not "unknown key(s) i"
    (_recipe_text(dit='rules = "int8"'), r'components\.dit\.rules = "int8" is not allowed: expected a non-empty array'),
    # 17.8: a recipe without [components] (or without one of them) is not silently fp32
    ('name = "x"\ndescription = "no components"\n', r"components is missing"),
    (_recipe_text(decoder=None), r"components\.decoder is missing"),
    ('name = "x"\ncomponents = "int8"\n', r'components = "int8" is not allowed: expected a \[components\] table'),
])
def test_bad_recipes_are_refused(tmp_path, body, needle):
    path = _write(tmp_path, body)
    with pytest.raises(EdgegenError, match=needle) as exc:
        load_recipe(path)
    msg = str(exc.value)
    assert msg.startswith(f"recipe {path}: ") and "\n" not in msg


_TARGET = {"name": '"t"', "backend": '"litert"', "abi": '"x86_64"', "threads": "2", "fp16_compute": "false"}


def _target_text(**fields):
    merged = {**_TARGET, **fields}
    return "".join(f"{k} = {v}\n" for k, v in merged.items() if v is not None)


def test_valid_target_text_loads(tmp_path):
    t = load_target(_write(tmp_path, _target_text(xnnpack_flags='["QS8"]', min_api_level="28")))
    assert (t.threads, t.fp16_compute, t.xnnpack_flags, t.min_api_level) == (2, False, ("QS8",), 28)
    assert load_target(_write(tmp_path, _target_text(name=None))).name == "r"  # the file's stem


@pytest.mark.parametrize("fields,needle", [
    ({"threads": '"two"'}, r'threads = "two" is not allowed: expected an integer from 1 to 256'),
    ({"threads": "0"}, r"threads = 0 is not allowed: expected an integer from 1 to 256"),
    ({"threads": "2.5"}, r"threads = 2\.5 is not allowed"),
    ({"threads": "true"}, r"threads = true is not allowed"),
    ({"fp16_compute": '"no"'}, r'fp16_compute = "no" is not allowed: expected true or false'),
    ({"backend": '"tpu"'}, r'backend = "tpu" is not allowed: expected one of executorch, litert'),
    ({"abi": None}, r"abi is missing: expected a non-empty string"),
    ({"threads": None}, r"threads is missing"),
    ({"xnnpack_flags": '"QS8"'}, r'xnnpack_flags = "QS8" is not allowed: expected an array of flag names'),
    ({"min_api_level": "0"}, r"min_api_level = 0 is not allowed"),
    ({"colour": '"red"'}, r"unknown key\(s\) colour \(allowed: name, description, backend"),
    ({"threads": "="}, r"invalid TOML"),
])
def test_bad_targets_are_refused(tmp_path, fields, needle):
    path = _write(tmp_path, _target_text(**fields))
    with pytest.raises(EdgegenError, match=needle) as exc:
        load_target(path)
    msg = str(exc.value)
    assert msg.startswith(f"target {path}: ") and "\n" not in msg


def test_int4_group_outside_matrix(tmp_path):
    p = _write(tmp_path, _recipe_text(dit='sqnr_floor_db = 10\nrules = [{ pattern = "*", scheme = "int4", group_size = 48 }]'))
    with pytest.raises(EdgegenError, match="nearest supported row: int4 group"):
        check_supported(load_recipe(p), load_target("host-executorch"))


def test_unknown_names():
    with pytest.raises(EdgegenError, match="unknown recipe 'int2'.*int8"):
        load_recipe("int2")
    with pytest.raises(EdgegenError, match="unknown target"):
        load_target("ios")
    with pytest.raises(EdgegenError, match="recipe file .*nothere.toml not found"):
        load_recipe("nothere.toml")
