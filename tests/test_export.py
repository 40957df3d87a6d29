"""random:tiny x both backends x fp32/int8/int4: export, load in the real runtime, compare with eager."""

import copy
import json
import shutil

import pytest
import torch

from edgegen.bundle import open_bundle
from edgegen.errors import EdgegenError
from edgegen.export import export_bundle
from edgegen.export.wrappers import example_inputs, io_spec
from edgegen.metrics import compare
from edgegen.recipes import load_recipe, load_target
from edgegen.runtime import load_artifacts
from edgegen.metrics import rel_err
from tests.helpers import assert_one_error, run_cli

BACKENDS = ["executorch", "litert"]


def _check_against_eager(tiny, bundle_path, *, floors=None):
    bundle = open_bundle(bundle_path)
    arts = load_artifacts(bundle, threads=2)
    for comp, art in arts.items():
        ex = example_inputs(tiny, comp)
        names = [i["name"] for i in io_spec(tiny, comp)["inputs"]]
        got = art(**dict(zip(names, ex)))
        with torch.no_grad():
            ref = getattr(tiny, comp)(*ex)
        ref = ref if isinstance(ref, tuple) else (ref,)
        for r, g in zip(ref, got):
            m = compare(r, g)
            if floors is None or comp not in floors:
                assert m.rel_err <= 1e-4, (comp, m)
            else:
                assert m.sqnr_db >= floors[comp], (comp, m)
    return bundle


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_bundle_matches_eager_tightly(tiny, bundle_factory, backend):
    bundle = _check_against_eager(tiny, bundle_factory(backend, "fp32"))
    m = bundle.manifest
    assert m.schema_version == 1 and m.backend == backend and m.latent_length == tiny.latent_length
    assert m.to_json()["sampler"] == {"type": "pingpong", "steps": 8, "logsnr_max": -6.0, "logsnr_min": 2.0}
    assert [i.name for i in m.artifacts["dit"].inputs] == ["x", "t", "cross_attn_cond", "global_cond"]
    assert m.artifacts["decoder"].outputs[0].shape == (1, 2, tiny.latent_length * 2048)
    if backend == "executorch":
        assert all(0 < a.delegated_fraction <= 1 for a in m.artifacts.values())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recipe", ["int8", "int4"])
def test_quantized_bundles_above_recipe_floors(tiny, bundle_factory, backend, recipe):
    floors = {c: load_recipe(recipe).components[c].sqnr_floor_db for c in ("text_encoder", "dit")}
    # int8 is exported whole (the harness tests reuse it); int4 only where it differs from fp32
    path = bundle_factory(backend, recipe, **({} if recipe == "int8" else {"components": ("text_encoder", "dit")}))
    bundle = _check_against_eager(tiny, path, floors=floors)
    fp32 = open_bundle(bundle_factory(backend, "fp32"))
    assert bundle.path("dit").stat().st_size < 0.6 * fp32.path("dit").stat().st_size
    assert "int" in json.dumps(bundle.manifest.artifacts["dit"].schemes)
    if backend == "executorch":  # int8 Linears share delegates with the float ops between them (partitioners "joint")
        from edgegen.export.executorch import program_plan

        assert program_plan(bundle.path("dit"))[0] <= 4 and program_plan(bundle.path("text_encoder"))[0] <= 8


def test_fp16_decoder_for_arm_target(tiny, bundle_factory):
    """The mobile recipe on an fp16-capable target casts the decoder to half; it still runs here."""
    path = bundle_factory("executorch", "mobile", components=("decoder",), target="android-arm64-executorch")
    _check_against_eager(tiny, path, floors={"decoder": load_recipe("mobile").components["decoder"].sqnr_floor_db})
    assert open_bundle(path).manifest.artifacts["decoder"].schemes == {"fp16": 1}


def test_fp16_text_encoder_takes_fp32_seconds(tiny):
    """11.6: an fp16 text-encoder rule computes T5 in half; the seconds conditioner keeps its fp32 input."""
    from edgegen.export.wrappers import to_half, wrap

    module = to_half("text_encoder", copy.deepcopy(tiny.text_encoder))
    assert next(module.t5.parameters()).dtype == torch.float16
    ex = example_inputs(tiny, "text_encoder")
    with torch.no_grad():
        ref, got = tiny.text_encoder(*ex), wrap("text_encoder", module, half=True)(*ex)
    for r, g in zip(ref, got):
        assert g.dtype == torch.float32 and compare(r, g).sqnr_db >= 40


@pytest.mark.executorch
def test_fp16_text_encoder_bundle(tiny, tmp_path):
    recipe = tmp_path / "te16.toml"
    recipe.write_text('name = "te16"\n[components.text_encoder]\nsqnr_floor_db = 40.0\n'
                      'rules = [{ pattern = "*", scheme = "fp16", fallback = "fp32" }]\n'
                      '[components.dit]\nrules = [{ pattern = "*", scheme = "fp32" }]\n'
                      '[components.decoder]\nrules = [{ pattern = "*", scheme = "fp32" }]\n')
    out = tmp_path / "b"
    export_bundle(tiny, target=load_target("android-arm64-executorch"), recipe=load_recipe(recipe), out=out,
                  components=("text_encoder",))
    _check_against_eager(tiny, out, floors={"text_encoder": 40.0})
    assert open_bundle(out).manifest.artifacts["text_encoder"].schemes == {"fp16": 1}


def test_backends_share_one_entry_point():
    """11.6: export/__init__ calls `export_component` of either backend with the same arguments."""
    import inspect

    from edgegen.export import executorch, litert

    params = [[(p.name, p.kind, p.annotation) for p in inspect.signature(m.export_component).parameters.values()]
              for m in (executorch, litert)]
    assert params[0] == params[1]
    assert [name for name, _, _ in params[0]] == ["component", "module", "example_inputs", "out_path", "rules",
                                                  "on_stage"]


def test_nan_weights_refused_before_any_work(tiny, tmp_path, monkeypatch):
    """17.6: a pipeline built in Python with a non-finite weight is refused by name; no backend is called."""
    import edgegen.export.litert as litert

    monkeypatch.setattr(litert, "export_component", lambda *a, **k: pytest.fail("the backend was called"))
    bad = copy.deepcopy(tiny)
    with torch.no_grad():
        bad.decoder.layers[0].weight.view(-1)[3] = float("-inf")
    with pytest.raises(EdgegenError, match=r"decoder weight 'layers\.0\.weight' holds 1 non-finite value"):
        export_bundle(bad, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=tmp_path / "b",
                      components=("decoder",))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_leaves_the_reference_bit_identical(tiny, tmp_path, backend, fresh_lowering):
    """The backends get weight-sharing copies (no second copy of the DiT's weights at the export's peak): every
    transform they apply (a fp16 cast, torchao or LiteRT int8 Linears, int8 decoder convolutions beside float
    ones, the stateful decoder's convolution and GEMM forms, the encoder) leaves the reference bit-identical."""
    pipe = copy.deepcopy(tiny)
    before = {c: {k: v.clone() for k, v in m.state_dict().items()} for c, m in pipe.modules().items()}
    recipe = tmp_path / "every-transform.toml"
    recipe.write_text('name = "every-transform"\n'
                      '[components.text_encoder]\nsqnr_floor_db = 20.0\n'
                      'rules = [{ pattern = "*", scheme = "fp16", fallback = "fp32" }]\n'
                      '[components.dit]\nsqnr_floor_db = 20.0\nrules = [{ pattern = "*", scheme = "int8" }]\n'
                      '[components.decoder]\nsqnr_floor_db = 20.0\n'
                      'rules = [{ pattern = "layers.1.layers.1", scheme = "int8" }, '  # a ConvTranspose and a Conv1d
                      '{ pattern = "layers.1.layers.2.layers.1", scheme = "int8" }, '
                      '{ pattern = "*", scheme = "fp32" }]\n')
    target = load_target(f"android-arm64-{backend}")  # fp16-capable: the fp16 rule casts there
    # ExecuTorch lowers slowly (~85 s for all four): its DiT and encoder take the same paths as the int8 text
    # encoder of every other ExecuTorch bundle, which check_weights_untouched guards in each export that lowers
    components = (("text_encoder", "decoder") if backend == "executorch"
                  else ("text_encoder", "dit", "decoder", "encoder"))
    report = export_bundle(pipe, target=target, recipe=load_recipe(recipe), out=tmp_path / "b", verify=False,
                           components=components, decoder_window=5)
    assert open_bundle(report.out).manifest.decoder_stream.mode == "stateful"
    for comp, m in pipe.modules().items():
        after = m.state_dict()
        assert after.keys() == before[comp].keys()
        changed = [k for k, v in after.items() if not torch.equal(v, before[comp][k])]
        assert not changed, (comp, changed)


def test_an_in_place_write_into_the_reference_is_refused(tiny, tmp_path, monkeypatch, fresh_lowering):
    """check_weights_untouched: a backend that changes a weight the reference shares fails the export by name (a
    rewrite with the same values, as litert-torch's clamp of constants, passes: every LiteRT export tests that)."""
    import edgegen.export.litert as litert

    real = litert.export_component

    def writes(component, module, *args, **kwargs):
        with torch.no_grad():
            next(module.parameters()).mul_(0.5)  # into the storage the reference shares
        return real(component, module, *args, **kwargs)

    monkeypatch.setattr(litert, "export_component", writes)
    pipe = copy.deepcopy(tiny)
    with pytest.raises(EdgegenError, match=r"decoder: exporting changed the reference's weight '[\w.]+'; this is an "):
        export_bundle(pipe, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=tmp_path / "b",
                      components=("decoder",), verify=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.executorch
def test_executorch_export_keeps_nothing_alive(tiny, tmp_path):
    """A written ExecuTorch program is freed: XNNPACK's `WhyNoPartition` globals, ExecuTorch's lru caches and torch's
    fake-tensor cache each held every exported program (graph, constants, delegate blobs: ~1.6 GB after the
    full-size DiT) until `_forget_written_program`. What it keeps are constants: XNNPACK's pattern graphs, which
    the next export would otherwise trace again."""
    import gc

    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa
    from torch.export import ExportedProgram

    from edgegen.export import executorch, weight_sharing_copy

    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, ExportedProgram) for o in gc.get_objects())

    def export(component: str, recipe: str) -> None:
        rules = load_recipe(recipe).resolved_rules(component, load_target("host-executorch"))
        executorch.export_component(component, weight_sharing_copy(getattr(tiny, component)),
                                    example_inputs(tiny, component), tmp_path / f"{component}.pte", rules=rules)

    export("text_encoder", "fp32")  # builds the pattern graphs (any export does), which stay
    assert sdpa.get_graphs.cache_info().currsize == 1 and bilinear_2d._get_bilinear_2d_graphs.cache_info().currsize == 1
    before = alive()
    # the text encoder: its int8 Linears take the DiT's path through torchao and XNNPACK, in a third of the time
    export("text_encoder", "int8")
    assert alive() <= before


def test_released_encoder(tiny):
    pipe = copy.deepcopy(tiny)
    pipe.release("encoder")
    assert "encoder" not in pipe.modules()
    with pytest.raises(EdgegenError, match="VAE encoder was released"):
        pipe.encode_audio(torch.zeros(1, 2, 2048 * 4))
    with pytest.raises(EdgegenError, match="only the encoder"):
        pipe.release("dit")


def test_info_verifies_checksums(bundle_factory, tmp_path):
    good = bundle_factory("litert", "fp32")
    res = run_cli("info", str(good))
    assert res.returncode == 0 and "checksums OK" in res.stdout
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    data = bytearray((bad / "dit.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "dit.tflite").write_bytes(bytes(data))
    res = run_cli("info", str(bad))
    assert_one_error(res, "fails its sha256 check")
    (bad / "dit.tflite").unlink()
    res = run_cli("info", str(bad))
    assert res.returncode == 2 and "dit.tflite is missing" in res.stderr


def test_interrupted_export_leaves_nothing(tiny, tmp_path, monkeypatch, fresh_lowering):
    import edgegen.export.litert as litert

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(litert, "export_tflite", boom)
    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        export_bundle(tiny, target=load_target("host-litert"), recipe=load_recipe("fp32"), out=out)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force_and_unsupported_is_fast(tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    res = run_cli("export", "-m", "random:tiny", "-t", "host-litert", "-r", "fp32", "-o", str(out))
    assert res.returncode == 2 and "--force" in res.stderr
    g512 = tmp_path / "g512.toml"
    g512.write_text('name = "g512"\n[components.text_encoder]\nrules = [{ pattern = "*", scheme = "fp32" }]\n'
                    '[components.dit]\nsqnr_floor_db = 10.0\nrules = [{ pattern = "*", scheme = "int4", group_size = 512 }]\n'
                    '[components.decoder]\nrules = [{ pattern = "*", scheme = "fp32" }]\n')
    res = run_cli("export", "-m", "random:tiny", "-t", "host-litert", "-r", str(g512), "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "nearest supported row" in res.stderr and not (tmp_path / "x").exists()


def test_cli_export_zip_and_summary(tmp_path, fresh_lowering):
    out = tmp_path / "z"
    res = run_cli("export", "-m", "random:tiny", "-t", "host-litert", "-r", "int8", "-o", str(out), "--zip",
                  "--components", "text_encoder,dit")
    assert res.returncode == 0, res.stderr
    assert "text_encoder" in res.stdout and "dit" in res.stdout and "wrote" in res.stdout
    assert "quantize" in res.stderr and "serialize" in res.stderr  # progress per stage
    res = run_cli("info", str(out.with_suffix(".zip")))
    assert res.returncode == 0 and "checksums OK" in res.stdout


@pytest.mark.parametrize("strides", [(2, 4, 4, 8, 8), (2, 4, 8)])
def test_2d_decoder_matches_eager(strides):
    """The ExecuTorch export form of the decoder (2-D convolutions on [B, C, 1, L]) is the same function, and its
    convolutions keep the reference's module paths (recipe rules match them)."""
    from edgegen.components.oobleck import Decoder2D, OobleckConfig, OobleckDecoder, conv_names
    from edgegen.presets import randomize_

    cfg = OobleckConfig(channels=8, c_mults=(1, 2, 4, 8, 16)[:len(strides)], strides=strides)
    dec = OobleckDecoder(cfg).eval()
    randomize_(dec, seed=4)
    x = torch.randn(2, 64, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, got = dec(x), Decoder2D(dec)(x)
    assert got.shape == ref.shape == (2, 2, 7 * cfg.hop)
    assert rel_err(ref, got) <= 1e-5
    assert list(Decoder2D(dec).conv_sources()) == conv_names(dec)


@pytest.mark.executorch
def test_shared_provenance_writes_the_same_program(tiny, bundle_factory, tmp_path, monkeypatch):
    """`executorch.shared_provenance`: inside it a re-created node shares its source's provenance records (torch.fx's
    NodeSource deep-copied them, a quarter of a lowering); the program written is byte-identical to one lowered
    without it, and torch's module is as it was afterwards."""
    from torch.fx import Graph
    from torch.fx import traceback as fx_traceback

    from edgegen.export import executorch, weight_sharing_copy

    node = Graph().placeholder("x")
    node.meta["from_node"] = [fx_traceback.NodeSource(None, "earlier pass")]
    with executorch.shared_provenance():
        assert fx_traceback.NodeSource(node, "a pass").from_node[0] is node.meta["from_node"][0]
    assert fx_traceback.copy is copy
    assert fx_traceback.NodeSource(node, "a pass").from_node[0] is not node.meta["from_node"][0]

    # the session's fp32 bundle was lowered inside it; the same text encoder lowered without it:
    shared = bundle_factory("executorch", "fp32") / "text_encoder.pte"
    monkeypatch.setattr(executorch, "SHARED_PROVENANCE", False)
    rules = load_recipe("fp32").resolved_rules("text_encoder", load_target("host-executorch"))
    executorch.export_component("text_encoder", weight_sharing_copy(tiny.text_encoder),
                                example_inputs(tiny, "text_encoder"), tmp_path / "deep.pte", rules=rules)
    assert (tmp_path / "deep.pte").read_bytes() == shared.read_bytes()
