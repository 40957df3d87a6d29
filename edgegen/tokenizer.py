"""SentencePiece tokenization with T5's conventions: pieces, then EOS; fixed length; pad 0; mask 1 on real tokens.

    Tokenizer(path, max_length=64).encode(["a dog barking"]) -> (ids [B, 64] int64, mask [B, 64] int64)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import sentencepiece as spm

from edgegen.errors import EdgegenError


class Tokenizer:
    def __init__(self, path: Path, *, max_length: int = 64, eos_id: int = 1, pad_id: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgegenError(f"tokenizer model not found: {self.path}")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except Exception as exc:
            raise EdgegenError(f"{self.path} is not a SentencePiece model ({exc})") from None
        self.max_length, self.eos_id, self.pad_id = max_length, eos_id, pad_id

    def encode_one(self, prompt: str) -> list[int]:
        """Token ids with EOS last, truncated to max_length (with a warning)."""
        pieces = self.sp.encode(prompt)
        if len(pieces) > self.max_length - 1:
            warnings.warn(f"prompt is {len(pieces) + 1} tokens; truncated to {self.max_length}", stacklevel=3)
            pieces = pieces[: self.max_length - 1]
        return pieces + [self.eos_id]

    def encode(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(prompts), self.max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(prompts), self.max_length), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            tokens = self.encode_one(prompt)
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask
