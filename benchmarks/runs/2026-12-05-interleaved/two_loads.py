import sys, time, statistics, numpy as np, gc
from benchmarks.speed import bare_dit  # run from the repository root
from pathlib import Path
from edgegen.bundle import open_bundle
b = Path(sys.argv[1])
with open_bundle(b) as bb: man, p = bb.manifest, bb.path("dit")
named = bare_dit._inputs(man.artifacts["dit"], np.random.default_rng(0))
load = bare_dit._litert if man.backend == "litert" else bare_dit._executorch
def t(call, n=6):
    ts=[]
    for _ in range(n):
        t0=time.perf_counter(); call(named); ts.append(time.perf_counter()-t0)
    return round(statistics.median(ts),4)
for rep in range(3):
    a = load(p, 2); a(named)
    bcall = load(p, 2); bcall(named)
    print("load", rep, "A", t(a), "B", t(bcall), "A", t(a), "B", t(bcall), flush=True)
    del a, bcall; gc.collect()
