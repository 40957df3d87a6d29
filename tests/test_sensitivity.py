"""Conditioned random decoders, per-layer sensitivity, recipes it writes, and per-layer int8 decoders on both
backends (random:tiny; real exports, real runtimes)."""

import copy
import json
import math

import pytest
import torch

from edgegen import sensitivity as sens
from edgegen.components.oobleck import OobleckConfig, OobleckDecoder
from edgegen.metrics import compare, sqnr_db
from edgegen.presets import condition_decoder_, randomize_
from edgegen.recipes import load_recipe
from tests.helpers import TINY_CONV_TRANSPOSES, TINY_DECODER_LAYERS, assert_one_error, run_cli

N = TINY_DECODER_LAYERS


def _weight_noise(decoder, x):
    """(SQNR of the weights after per-channel int8 rounding, SQNR of the decoder's output with them), dB."""
    with torch.no_grad():
        ref = decoder(x)
        layers = sens.quantizable("decoder", decoder)
        weights = torch.cat([m.weight.detach().reshape(-1) for _, m in layers])
        rounded = torch.cat([sens._int8_weight(m, "litert").detach().reshape(-1) for _, m in layers])
        saved = [(m, m.weight.data) for _, m in layers]
        for m, _ in saved:
            m.weight.data = sens._int8_weight(m, "litert")
        got = decoder(x)
        for m, w in saved:
            m.weight.data = w
    return sqnr_db(weights, rounded), sqnr_db(ref, got), len(layers)


@pytest.mark.parametrize("channels", [8, 32])
def test_conditioned_decoder_keeps_weight_noise_small(channels):
    """Each of n layers adds its own weight noise at unit gain: output SQNR ~ weight SQNR - 10 log10(n). The
    decoder edgegen built before (randomize_ alone) amplified it ~8 dB more (measured 18.8 vs 26.8 dB at tiny size,
    16.7 vs 26.5 dB at full size): both are checked, so the bound is known to separate them."""
    cfg = OobleckConfig(channels=channels)
    x = torch.randn(1, cfg.latent_dim, 12, generator=torch.Generator().manual_seed(3))
    raw = OobleckDecoder(cfg).eval()
    randomize_(raw, seed=5)
    conditioned = copy.deepcopy(raw)
    condition_decoder_(conditioned, seed=6)
    w_db, out_db, n = _weight_noise(conditioned, x)
    bound = w_db - 10 * math.log10(n) - 3.0
    assert out_db >= bound, (out_db, w_db, n)
    assert out_db >= 24.0
    _, raw_db, _ = _weight_noise(raw, x)
    assert raw_db < bound, (raw_db, bound)
    # and the conditioned decoder's activations are what it was built to: audio at 0.1 std
    with torch.no_grad():
        assert 0.05 < float(conditioned(x).std()) < 0.2


def test_random_pipelines_have_conditioned_decoders(tiny):
    x = torch.randn(1, 64, 12, generator=torch.Generator().manual_seed(4))
    _, out_db, _ = _weight_noise(tiny.decoder, x)
    assert out_db >= 24.0


def test_layer_sensitivity_table(tiny):
    result = sens.measure(tiny, "decoder", frames=8)
    names = [layer.name for layer in result.layers]
    assert len(names) == N and len(set(names)) == N and "layers.1.layers.1" in names  # ConvTranspose included
    sqnrs = [layer.sqnr_db for layer in result.layers]
    assert sqnrs == sorted(sqnrs) and all(math.isfinite(v) and v > 20 for v in sqnrs)
    assert abs(sum(layer.macs_share for layer in result.layers) - 1) < 1e-9
    assert 0 < sum(layer.time_share for layer in result.layers) <= 1
    # every layer quantized at once costs more than any one alone
    assert result.all_sqnr_db < sqnrs[0]
    table = sens.format_table(result)
    assert "layers.1.layers.1" in table and f"all {N} layers int8" in table
    json.dumps(result.to_json())


def test_weight_only_scheme_keeps_activations_float(tiny):
    """int8w rounds the same weights and leaves the activations float: every layer costs less than in int8, and
    `tuned_recipe` on the `size` recipe keeps its scheme (the float layers chosen, the rest int8w)."""
    from edgegen.recipes import load_recipe

    dynamic = sens.measure(tiny, "decoder", frames=8)
    weights = sens.measure(tiny, "decoder", scheme="int8w", frames=8)
    assert weights.scheme == "int8w" and weights.all_sqnr_db > dynamic.all_sqnr_db + 1.0
    by_name = {layer.name: layer.sqnr_db for layer in dynamic.layers}
    assert all(layer.sqnr_db >= by_name[layer.name] - 0.5 for layer in weights.layers)
    recipe, results = sens.tuned_recipe(load_recipe("size"), tiny, floor_db=weights.all_sqnr_db + 3.0,
                                       backend="litert", frames=8)
    rules = recipe.components["decoder"].rules
    assert results["decoder"].scheme == "int8w" and rules[-1].scheme == "int8w"
    assert {r.scheme for r in rules[:-1]} == {"fp32"} and len(rules) > 1


def _op_census(path) -> dict[tuple[str, str], int]:
    """(op, weight tensor type) -> count, for the ops dynamic-range quantization applies to."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(path.read_bytes())
    out = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            code = tfl.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode)
            name = getattr(code, "value", code)
            if name in ("CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
                key = (name, "int8" if sg.tensors[op.inputs[1]].type == 9 else "float")
                out[key] = out.get(key, 0) + 1
    return out


def _artifact_and_simulation_sqnr(pipe, bundle, backend: str) -> tuple[float, float]:
    """SQNR (dB) against the float decoder of the bundle's whole-sequence int8 decoder run in its runtime, and of
    `backend`'s sensitivity simulation of every layer in int8, on the same representative latents."""
    from edgegen.bundle import open_bundle
    from edgegen.runtime import load_artifacts

    x = sens.representative_inputs(pipe, "decoder", frames=pipe.latent_length)[0][0][0]
    got = load_artifacts(open_bundle(bundle), threads=2)["decoder"](latents=x.numpy())[0]
    layers = sens.quantizable("decoder", pipe.decoder)
    with torch.no_grad():
        ref = pipe.decoder(x)
        with sens.simulated_int8(layers, "int8", backend):
            sim = compare(ref, pipe.decoder(x)).sqnr_db
    return compare(ref, torch.as_tensor(got)).sqnr_db, sim


@pytest.mark.litert
@pytest.mark.parametrize("stream", [False, True])
def test_litert_int8_decoder_uses_its_own_convolution(tiny_long, tmp_path, stream):
    """On LiteRT an int8 decoder keeps its Conv1d as dynamic-range CONV_2D ops (int8 weights) and runs its
    quantized ConvTransposes as int8 GEMMs (FULLY_CONNECTED), whole-sequence and streamed alike. The sensitivity
    simulation for LiteRT (one activation scale per conv input) agrees with the artifact within 3 dB."""
    from edgegen.export import export_bundle
    from edgegen.recipes import load_target

    recipe = _recipe(tmp_path, decoder_rules='{ pattern = "*", scheme = "int8" }', floor=10)
    out = tmp_path / "b"
    export_bundle(tiny_long, target=load_target("host-litert"), recipe=recipe, out=out, components=("decoder",),
                  decoder_window=16 if stream else None, verify=False)
    assert _op_census(out / "decoder.tflite") == {("CONV_2D", "int8"): N - TINY_CONV_TRANSPOSES,
                                                  ("FULLY_CONNECTED", "int8"): TINY_CONV_TRANSPOSES}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"]["decoder"]["schemes"] == {"int8": N}
    assert ("decoder_stream" in manifest) == stream
    if stream:
        return  # the streamed artifact's quality is the export check's (tests/test_export_verify.py)
    real, sim = _artifact_and_simulation_sqnr(tiny_long, out, "litert")
    assert abs(real - sim) < 3.0, (real, sim)


@pytest.mark.parametrize("stream", [False, True])
def test_executorch_int8_decoder_quantizes_its_2d_convolutions(tiny_long, int8_stateful_decoder, tmp_path, stream):
    """On ExecuTorch an int8 decoder's convolutions (ConvTranspose included) are XNNPACK's dynamically
    quantized 2-D convolutions, whole-sequence and streamed alike: the weights shrink ~4x and nothing is left
    outside the delegate. Whole-sequence, the sensitivity simulation for ExecuTorch (one activation scale per input)
    agrees with the artifact within 3 dB; rules choose layers (int8 on block 1 only shrinks exactly its weights);
    and float layers share delegates: an fp32 decoder is one (the partitioner order of `executorch.partitioners`;
    before it, each convolution was its own delegate). The partitioner order and rules are the streamed form's too:
    that form is checked on the session's all-int8 stateful decoder (each int8 lowering costs ~1 s per convolution)."""
    from edgegen.export import export_bundle
    from edgegen.export.executorch import program_plan
    from edgegen.recipes import load_target

    def export(rules: str) -> tuple[int, int, dict, object]:
        out = tmp_path / f"b{len(list(tmp_path.glob('b*')))}"
        export_bundle(tiny_long, target=load_target("host-executorch"), recipe=_recipe(tmp_path, decoder_rules=rules,
                      floor=10), out=out, components=("decoder",), decoder_window=None, verify=False)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["artifacts"]["decoder"]["delegated_fraction"] >= 0.9
        return (out / "decoder.pte").stat().st_size, program_plan(out / "decoder.pte")[0], manifest, out

    params = sum(p.numel() for p in tiny_long.decoder.parameters())
    if stream:  # the session's stateful all-int8 decoder (its default window), which test_runner_stateful runs
        int8_out = int8_stateful_decoder
        manifest = json.loads((int8_out / "manifest.json").read_text())
        assert manifest["artifacts"]["decoder"]["delegated_fraction"] >= 0.9
        int8 = (int8_out / "decoder.pte").stat().st_size
    else:
        int8, int8_delegates, manifest, int8_out = export('{ pattern = "*", scheme = "int8" }')
    assert manifest["artifacts"]["decoder"]["schemes"] == {"int8": N}
    assert ("decoder_stream" in manifest) == stream
    # int8 weights (1 byte each) plus ~150 KB of per-delegate overhead at this width (and the streamed form's state
    # bookkeeping): well under the 4 bytes per weight of fp32
    assert int8 < 2.5 * params, (int8, params)
    if stream:
        return  # the streamed artifact's quality is the export check's (tests/test_export_verify.py)
    fp32, fp32_delegates, _, _ = export('{ pattern = "*", scheme = "fp32" }')
    block1, block1_delegates, manifest, _ = export('{ pattern = "layers.1.*", scheme = "int8" }, '
                                                   '{ pattern = "*", scheme = "fp32" }')
    assert manifest["artifacts"]["decoder"]["schemes"] == {"int8": 7, "fp32": N - 7}
    assert fp32_delegates == 1 and block1_delegates < int8_delegates, (fp32_delegates, block1_delegates, int8_delegates)
    # 3 of 4 weight bytes gone, less the int8 file's per-delegate overhead (one delegate per int8 convolution)
    assert fp32 - int8 > 2.5 * params
    weights = sum(m.weight.numel() for name, m in tiny_long.decoder.named_modules()
                  if name.startswith("layers.1.") and hasattr(m, "weight") and m.weight.dim() == 3)
    assert 2 * weights < fp32 - block1 < 4 * weights, (fp32 - block1, weights)  # exactly block 1's weights shrank
    real, sim = _artifact_and_simulation_sqnr(tiny_long, int8_out, "executorch")
    assert abs(real - sim) < 3.0, (real, sim)


def _recipe(tmp_path, *, decoder_rules: str, floor: float):
    p = tmp_path / "r.toml"
    p.write_text(f"""name = "t"
[components.text_encoder]
rules = [{{ pattern = "*", scheme = "fp32" }}]
[components.dit]
rules = [{{ pattern = "*", scheme = "fp32" }}]
[components.decoder]
sqnr_floor_db = {floor}
rules = [{decoder_rules}]
""")
    return load_recipe(p)


def test_choose_float_layers_meets_the_floor(tiny):
    result = sens.measure(tiny, "decoder", frames=8)
    floor = result.all_sqnr_db + 2.0
    chosen = sens.choose_float_layers(result, tiny, floor_db=floor)
    assert chosen["sqnr_db"] >= floor + sens.MARGIN_DB and 0 < len(chosen["float_layers"]) < N
    # the most damaging layers are the ones kept float
    assert chosen["float_layers"] == [layer.name for layer in result.layers[:len(chosen["float_layers"])]]
    everything = sens.choose_float_layers(result, tiny, floor_db=199.0)
    assert len(everything["float_layers"]) == N


@pytest.mark.parametrize("backend", ["executorch", "litert"])
def test_cli_writes_a_recipe_whose_export_meets_its_floor(tiny, tmp_path, backend):
    """`edgegen sensitivity --floor --write-recipe` -> a recipe with per-layer decoder rules -> an export on either
    backend whose decoder runs int8 except the chosen layers and measures at or above the floor in its runtime."""
    from edgegen.export import export_bundle
    from edgegen.recipes import load_target

    rec, js = tmp_path / "mine.toml", tmp_path / "s.json"
    res = run_cli("sensitivity", "-m", "random:tiny", "-c", "decoder", "--frames", "8", "--floor", "30",
                  "--write-recipe", rec, "--json", js)
    assert res.returncode == 0, res.stderr
    assert f"layer {N}/{N}" in res.stderr and "floor 30 dB (+1 dB margin)" in res.stdout
    report = json.loads(js.read_text())
    assert report["schema"] == "edgegen.sensitivity/1" and len(report["layers"]) == N
    assert report["backend"] == "litert" and "--backend litert" in rec.read_text()  # the default: the coarser
    recipe = load_recipe(rec)
    rules = recipe.components["decoder"].rules
    floats = report["chosen"]["float_layers"]
    assert floats  # all layers int8 measure below the floor
    assert [r.pattern for r in rules[:-1]] == floats and rules[-1].scheme == "int8"
    assert recipe.components["decoder"].sqnr_floor_db == 30.0
    assert recipe.components["dit"].rules[0].scheme == "int8"  # the other components come from `fast`
    out = tmp_path / backend
    # the decoder alone: the recipe's other components are `fast`'s, which the export tests cover
    rep = export_bundle(tiny, target=load_target(f"host-{backend}"), recipe=recipe, out=out,
                        components=("decoder",))  # verified in-runtime
    schemes = next(c.schemes for c in rep.components if c.component == "decoder")
    assert schemes.get("fp32", 0) == len(floats) and schemes["int8"] == N - len(floats)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"]["decoder"]["schemes"] == schemes
    dec = manifest["verification"]["components"]["decoder"]
    assert manifest["verification"]["verified"] and dec["passed"] and dec["sqnr_db"] >= 30.0, dec


def test_export_chooses_float_layers_for_the_checkpoint_streamed_litert(tmp_path):
    """`export --recipe fast --sensitivity-floor` on a streamed (stateful, schema 3) LiteRT decoder: the float
    layers are chosen on this checkpoint simulating LiteRT's kernels, the decoder's convolutions are int8 CONV_2D
    ops, and the export verifies it."""
    out = tmp_path / "b"
    res = run_cli("export", "-m", "random:tiny-long", "-t", "host-litert", "-r", "fast", "--sensitivity-floor", "31",
                  "-c", "decoder", "-o", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "sensitivity: decoder keeps" in res.stderr and f"layer {N}/{N}" in res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 3 and manifest["decoder_stream"]["mode"] == "stateful"
    rules = manifest["recipe"]["components"]["decoder"]["rules"]
    assert len(rules) > 1 and rules[-1]["scheme"] == "int8"  # some layers kept float, the rest int8
    assert manifest["recipe"]["components"]["decoder"]["sqnr_floor_db"] == 31.0
    schemes = manifest["artifacts"]["decoder"]["schemes"]
    assert schemes["int8"] == N - (len(rules) - 1) and schemes.get("fp32", 0) == len(rules) - 1
    dec = manifest["verification"]["components"]["decoder"]
    assert dec["passed"] and dec["sqnr_db"] >= 31.0


def test_sensitivity_floor_needs_a_quantized_decoder(tmp_path):
    res = run_cli("export", "-m", "random:tiny", "-t", "host-litert", "-r", "int8", "--sensitivity-floor", "30",
                  "-o", tmp_path / "b")
    assert_one_error(res, "does not quantize the decoder")
    assert not (tmp_path / "b").exists()


def test_bad_sensitivity_arguments_are_one_line(tmp_path):
    res = run_cli("sensitivity", "-m", "random:tiny", "-c", "decoder", "--write-recipe", tmp_path / "x.toml")
    assert_one_error(res, "--write-recipe needs --floor")
    assert not (tmp_path / "x.toml").exists()


def test_decoder_runs_from_the_changed_block_equal_whole_runs(tiny):
    inputs, _ = sens.representative_inputs(tiny, "decoder", frames=8)
    run = sens._Runs("decoder", tiny.decoder, inputs)
    layers = dict(sens.quantizable("decoder", tiny.decoder))
    with torch.no_grad():
        for name in ("layers.0", "layers.1.layers.1", "layers.2.layers.4.layers.3", "layers.4"):
            with sens.simulated_int8([(name, layers[name])]):
                assert torch.equal(run([name]), sens._outputs(tiny.decoder, inputs)), name
