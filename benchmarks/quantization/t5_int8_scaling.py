"""Why random T5 weights must scale q by 1/sqrt(d_kv): int8 dynamic T5 parity with and without it.

    .venv/bin/python -m benchmarks.quantization.t5_int8_scaling

T5-base architecture, `edgegen.presets.randomize_` weights (seed 3), two real prompts; torchao's int8 dynamic
activation / int8 per-channel weight config (the `int8` recipe's ExecuTorch scheme) applied in eager PyTorch.
"unscaled" undoes the q scaling randomize_ applies; "scaled" is randomize_ as is. Prints SQNR of the quantized
encoder against fp32 for each.
"""

import copy
import math

import torch
from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
from torchao.quantization.granularity import PerAxis

from edgegen.components.t5_encoder import T5_CONFIGS, T5Attention, T5Encoder
from edgegen.metrics import compare
from edgegen.pipeline import load_pipeline
from edgegen.presets import randomize_


def main() -> None:
    torch.set_num_threads(1)
    cfg = T5_CONFIGS["t5-base"]
    ids, mask = load_pipeline("random:tiny").tokenizer.encode(["warm lo-fi piano loop with soft drums",
                                                               "a dog barking in the rain"])
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    for variant in ("unscaled", "scaled"):
        t5 = T5Encoder(cfg, max_length=64).eval()
        randomize_(t5, seed=3)
        if variant == "unscaled":
            with torch.no_grad():
                for m in t5.modules():
                    if isinstance(m, T5Attention):
                        m.q.weight.mul_(math.sqrt(m.d_kv))
        q = copy.deepcopy(t5)
        quantize_(q, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0)))
        with torch.no_grad():
            m = compare(t5(ids, mask), q(ids, mask))
        print(f"{variant:<9} int8 T5 vs fp32: SQNR {m.sqnr_db:5.1f} dB, cosine {m.cosine:.5f}")


if __name__ == "__main__":
    main()
