"""Recipes and target profiles are data: they load, they are validated, the support matrix answers fast."""

import time

import pytest

from edgegen.errors import EdgegenError
from edgegen.export.support import check_supported
from edgegen.recipes import load_recipe, load_target, recipe_names, target_names


def test_every_recipe_and_target_loads():
    assert {"fp32", "int8", "int4", "mobile", "mixed"} <= set(recipe_names())
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


@pytest.mark.parametrize("recipe,target", [("mixed", "host-litert"), ("mixed", "android-arm64-litert")])
def test_unsupported_combination_fails_fast_naming_nearest_row(recipe, target):
    start = time.perf_counter()
    with pytest.raises(EdgegenError, match="nearest supported row: .* on litert"):
        check_supported(load_recipe(recipe), load_target(target))
    assert time.perf_counter() - start < 0.5


def test_supported_combinations():
    for recipe in ("fp32", "int8", "int4", "mobile"):
        for target in target_names():
            check_supported(load_recipe(recipe), load_target(target))
    check_supported(load_recipe("mixed"), load_target("host-executorch"))


def _write(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("body,needle", [
    ('name="x"\n[components.dit]\nrules=[{pattern="*", scheme="int8"}]\n', "must state sqnr_floor_db"),
    ('name="x"\n[components.dit]\nsqnr_floor_db=20\nrules=[{pattern="*", scheme="int3"}]\n', "unknown scheme"),
    ('name="x"\n[components.dit]\nrules=[{pattern="*", scheme="fp32", colour="red"}]\n', "unknown key"),
    ('name="x"\n[components.vae]\nrules=[]\n', "unknown key"),
    ('name="x"\n[components.decoder]\nsqnr_floor_db=30\nrules=[{pattern="layers.1*", scheme="fp16"}]\n', "whole component"),
    ('name = \n', "invalid TOML"),
])
def test_bad_recipes_are_refused(tmp_path, body, needle):
    with pytest.raises(EdgegenError, match=needle):
        load_recipe(_write(tmp_path, body))


def test_int4_group_outside_matrix(tmp_path):
    p = _write(tmp_path, 'name="g48"\n[components.dit]\nsqnr_floor_db=10\nrules=[{pattern="*", scheme="int4", group_size=48}]\n')
    with pytest.raises(EdgegenError, match="nearest supported row: int4 group"):
        check_supported(load_recipe(p), load_target("host-executorch"))


def test_unknown_names():
    with pytest.raises(EdgegenError, match="unknown recipe 'int2'.*int8"):
        load_recipe("int2")
    with pytest.raises(EdgegenError, match="unknown target"):
        load_target("ios")
