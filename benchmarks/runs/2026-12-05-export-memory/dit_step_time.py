import time, numpy as np
from ai_edge_litert.interpreter import Interpreter
paths = {m: f"out/convertmem/dit-int8-{m}.tflite" for m in ("standard", "lightweight")}
runners = {}
for m, p in paths.items():
    it = Interpreter(model_path=p, num_threads=2); it.allocate_tensors(); runners[m] = it.get_signature_runner()
rng = np.random.default_rng(0)
ins = {"x": rng.standard_normal((1,64,256), dtype=np.float32), "t": np.array([0.5], np.float32),
       "cross_attn_cond": rng.standard_normal((1,65,768), dtype=np.float32), "global_cond": rng.standard_normal((1,768), dtype=np.float32)}
times = {m: [] for m in runners}
for m, r in runners.items(): r(**ins)
for i in range(6):
    for m, r in runners.items():
        t = time.perf_counter(); r(**ins); times[m].append(time.perf_counter() - t)
outs = {m: r(**ins) for m, r in runners.items()}
a, b = (list(o.values())[0] for o in outs.values())
print({m: round(float(np.median(v)), 4) for m, v in times.items()}, "max abs diff", float(np.abs(a - b).max()))
