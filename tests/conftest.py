from pathlib import Path

import pytest

import edgegen
from tests.helpers import write_official, write_t5_folder


@pytest.fixture(scope="session")
def tiny():
    return edgegen.load_pipeline("random:tiny")


@pytest.fixture(scope="session")
def tiny_dirs(tiny, tmp_path_factory) -> tuple[Path, Path]:
    """(model_dir, t5_dir): random:tiny written in the official layout plus a Hugging Face T5 folder."""
    root = tmp_path_factory.mktemp("tiny_official")
    return write_official(tiny, root / "model"), write_t5_folder(tiny, root / "t5")
