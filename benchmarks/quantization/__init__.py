"""Quantization: the decoder per recipe and layer (speed, size, SQNR), and the T5 scaling check."""
