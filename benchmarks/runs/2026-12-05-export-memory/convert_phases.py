import threading, time, sys, inspect
import torch, edgegen
from edgegen.export import litert, weight_sharing_copy
from edgegen.export.wrappers import example_inputs, wrap
from edgegen.recipes import load_recipe, load_target
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'): return int(l.split()[1])/1024
phase = ["load"]; peaks = {}
def sampler():
    while True:
        r = rss(); p = phase[0]; peaks[p] = max(peaks.get(p, 0), r); time.sleep(0.02)
threading.Thread(target=sampler, daemon=True).start()
pipe = edgegen.load_pipeline("random:sao-small"); pipe.release("encoder")
import gc; gc.collect()
phase[0] = "copy"; m = weight_sharing_copy(pipe.dit)
import litert_torch
from litert_torch import _convert
wr = wrap("dit", m); ex = example_inputs(pipe, "dit"); names = list(inspect.signature(wr.forward).parameters)
# mark litert_torch progress phases
from litert_torch._convert import core
orig = core.litert_converter.exported_programs_to_flatbuffer
def wrapped(*a, **k):
    phase[0] = "to_flatbuffer(lower+convert)"; r = orig(*a, **k); phase[0] = "after to_flatbuffer"; return r
core.litert_converter.exported_programs_to_flatbuffer = wrapped
phase[0] = "torch.export+fx passes"
with torch.no_grad():
    model = litert_torch.convert(wr.eval(), sample_kwargs=dict(zip(names, ex)), lightweight_conversion=True)
phase[0] = "to_file"; model.export("/tmp/dit-float.tflite")
phase[0] = "del model"; del model; gc.collect()
from edgegen.runtime import release_memory; release_memory()
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; print("HWM before read", hwm.strip(), "rss", rss())
phase[0] = "read"; data = open("/tmp/dit-float.tflite", "rb").read()
phase[0] = "quantize"
rule = load_recipe("int8").resolved_rules("dit", load_target("host-litert"))[0]
q, _ = litert.quantize_tflite(data, rule=rule)
phase[0] = "done"; time.sleep(0.1)
for k, v in peaks.items(): print(f"{k:35s} {v:8.0f}")
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; print(hwm.strip())
