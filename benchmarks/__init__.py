"""Benchmark tools for edgegen: speed, memory, quantization, arc; results in README.md, history in JOURNAL.md."""
