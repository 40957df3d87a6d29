"""The model's building blocks, one file per component; each mirrors the official checkpoint's names."""
